"""The synthetic benchmark: deterministic, and read by the same RefCOCO, MeViS and LLaVA readers."""
import filecmp
import os
import random
import sys

import numpy as np
import pytest

from projects.desa2va.datasets.llava import LLaVADataset
from projects.desa2va.datasets.mevis_revos import RefVOSDataset
from projects.desa2va.datasets.refcoco import RefCOCODataset
from projects.desa2va.datasets.synthetic import COLORS

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import make_synthetic_data  # noqa: E402

ARGS = ["--train-images", "12", "--val-images", "4", "--train-videos", "3", "--val-videos", "2", "--frames", "5"]
ANNOTATIONS = ["refcoco/instances.json", "refcoco/refs(unc).p", "mevis/train/meta_expressions.json",
               "mevis/train/mask_dict.json", "mevis/valid_u/meta_expressions.json", "mevis/valid_u/mask_dict.json",
               "llava/qa.json"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic_data.main(["--out", str(out), "--seed", "3"] + ARGS)
    return out


def test_deterministic_by_seed(synthetic, tmp_path):
    make_synthetic_data.main(["--out", str(tmp_path / "again"), "--seed", "3"] + ARGS)
    for f in ANNOTATIONS:
        assert filecmp.cmp(synthetic / f, tmp_path / "again" / f, shallow=False), f
    make_synthetic_data.main(["--out", str(tmp_path / "other"), "--seed", "4"] + ARGS)
    assert not filecmp.cmp(synthetic / ANNOTATIONS[0], tmp_path / "other" / ANNOTATIONS[0], shallow=False)


def test_refcoco_format_is_read_and_masks_match_the_pixels(synthetic, tiny_mllm_path):
    root = str(synthetic / "refcoco")
    train = RefCOCODataset(data_root=root, image_folder=f"{root}/images", split="train", model_path=tiny_mllm_path,
                           on_bad_sample="raise", sam_size=64)
    val = RefCOCODataset(data_root=root, image_folder=f"{root}/images", split="val", mode="eval",
                         model_path=tiny_mllm_path, on_bad_sample="raise", sam_size=64)
    assert len(train) == 12 and len(val) > 4
    checked = 0
    for i in range(len(val)):
        raw = val.load(i, random.Random(0))
        text, mask = raw.object_texts[0], raw.masks[0, 0]
        assert mask.any()
        colour = [c for c in COLORS if text.startswith(f"the {c} ")]
        if colour:  # "the red circle": the masked pixels are red
            mean = np.asarray(raw.images[0])[mask].mean(0)
            assert np.abs(mean - np.array(COLORS[colour[0]])).max() < 30, (text, mean)
            checked += 1
    assert checked > 0
    assert train[0]["masks"].shape[0] >= 1


def test_validation_splits_separate_attributes_from_comparisons(synthetic):
    import pickle

    from projects.desa2va.datasets.synthetic import expression_split

    with open(synthetic / "refcoco" / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    by_split = {}
    for r in refs:
        by_split.setdefault(r["split"], []).extend(s["sent"] for s in r["sentences"])
    assert set(by_split) <= {"train", "val", "testA", "testB"} and {"train", "val"} <= set(by_split)
    assert all(" left of " not in t and "most " not in t and "est " not in t for t in by_split["val"])
    assert all(" left of " in t for t in by_split.get("testB", []))
    assert all(t.split()[1] in ("largest", "smallest", "leftmost", "rightmost") for t in by_split.get("testA", []))
    assert expression_split("the largest square") == "testA" and expression_split("the red shape") == "val"
    assert expression_split("the star left of the red circle") == "testB"


def test_mevis_format_is_read(synthetic, tiny_mllm_path):
    for split, mode in (("train", "train"), ("valid_u", "eval")):
        ds = RefVOSDataset(data_root=str(synthetic / "mevis" / split), mode=mode, model_path=tiny_mllm_path,
                           on_bad_sample="raise", sam_size=64, num_frames=3)
        raw = ds.load(0, random.Random(0))
        assert raw.masks.shape[1] == (3 if mode == "train" else 5) and raw.masks.shape[2:] == (128, 128)
        assert raw.masks.any(axis=(2, 3)).all()  # objects stay in view on every frame
        sample = ds[0]
        assert sample["kind"] == "video" and sample["masks"].shape[0] == len(sample["object_texts"])


def test_llava_format_is_read(synthetic, tiny_mllm_path):
    ds = LLaVADataset(data_file=str(synthetic / "llava" / "qa.json"), image_folder=str(synthetic / "refcoco" / "images"),
                      model_path=tiny_mllm_path, on_bad_sample="raise", sam_size=64)
    assert len(ds) == 12
    s = ds[0]
    answer = ds.tokenizer.decode([t for t, l in zip(s["input_ids"], s["labels"]) if l != -100])
    assert answer.startswith("There are ") and answer.endswith(" shapes.<|im_end|>\n")
