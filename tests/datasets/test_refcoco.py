"""RefCOCO reader on a hand-written refer-API fixture: masks pixel-exact, texts, token layout, bad input."""
import json
import pickle
import random

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from projects.desa2va.datasets.refcoco import RefCOCODataset
from projects.desa2va.datasets.template import SampleError

H, W = 40, 60


def _uncompressed_rle(mask):
    """COCO uncompressed RLE, written by hand: column-major runs starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [mask.shape[0], mask.shape[1]], "counts": counts}


@pytest.fixture
def refcoco(tmp_path):
    root, images = tmp_path / "refcoco", tmp_path / "train2014"
    root.mkdir()
    images.mkdir()
    for i in (1, 2):
        Image.fromarray(np.full((H, W, 3), 60 * i, np.uint8)).save(images / f"COCO_train2014_{i:012d}.jpg")
    blob = np.zeros((H, W), bool)
    blob[5:15, 30:50] = True
    blob[10:12, 20:30] = True  # a non-rectangular shape
    ring = np.zeros((H, W), bool)
    ring[20:35, 5:25] = True
    ring[25:30, 10:20] = False
    anns = [
        # two overlapping polygons: their union, not a sum
        {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0,
         "segmentation": [[2, 2, 22, 2, 22, 12, 2, 12], [12, 6, 32, 6, 32, 18, 12, 18]]},
        {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": _uncompressed_rle(blob)},
        {"id": 12, "image_id": 2, "category_id": 1, "iscrowd": 1,
         "segmentation": {"size": [H, W], "counts": mask_utils.encode(np.asfortranarray(ring.astype(np.uint8)))[
             "counts"].decode()}},
    ]
    inst = {"images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W} for i in (1, 2)],
            "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}
    (root / "instances.json").write_text(json.dumps(inst))
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "train", "category_id": 1,
         "sentences": [{"raw": "The Left Box.", "sent": "the left box"}, {"raw": "boxes", "sent": "boxes"}]},
        {"ref_id": 1, "ann_id": 11, "image_id": 1, "split": "train", "category_id": 1,
         "sentences": [{"raw": "the blob", "sent": "the blob"}]},
        {"ref_id": 2, "ann_id": 12, "image_id": 2, "split": "val", "category_id": 1,
         "sentences": [{"raw": "the ring", "sent": "the ring"}, {"raw": "a square ring", "sent": "a square ring"}]},
    ]
    with open(root / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    poly = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(anns[0]["segmentation"], H, W))).astype(bool)
    return {"root": str(root), "images": str(images), "poly": poly, "blob": blob, "ring": ring}


def _ds(fx, tiny_mllm_path, **kw):
    kw.setdefault("sam_size", 64)
    return RefCOCODataset(data_root=fx["root"], image_folder=fx["images"], model_path=tiny_mllm_path, **kw)


def test_train_item_groups_objects_of_an_image(refcoco, tiny_mllm_path):
    ds = _ds(refcoco, tiny_mllm_path, split="train", max_objects=3)
    assert len(ds) == 1
    raw = ds.load(0, random.Random(0))
    assert raw.masks.shape == (2, 1, H, W) and raw.masks.dtype == bool
    by_text = dict(zip(raw.object_texts, raw.masks[:, 0]))
    assert np.array_equal(by_text["the blob"], refcoco["blob"])  # uncompressed RLE, pixel-exact
    box = by_text.get("the left box", by_text.get("boxes"))
    assert np.array_equal(box, refcoco["poly"])
    # rectangles 20x10 and 20x12 overlapping on 10x6: a union (380), not a sum (440)
    assert int(box.sum()) == 20 * 10 + 20 * 12 - 10 * 6
    sample = ds[0]
    ids = sample["input_ids"].tolist()
    tok = ds.tokenizer
    assert ids.count(tok.convert_tokens_to_ids("[SEG]")) == 2
    g = ds.geometry
    assert ids.count(tok.convert_tokens_to_ids("<IMG_CONTEXT>")) == sample["num_tiles"] * g.num_image_token
    assert sample["sam_images"].shape == (1, 3, 64, 64) and sample["masks"].shape == (2, 1, H, W)
    # the k-th [SEG] answers the question about the k-th object
    text = tok.decode(ids)
    assert text.index(sample["object_texts"][0]) < text.index(sample["object_texts"][1])


def test_max_objects_subsamples(refcoco, tiny_mllm_path):
    ds = _ds(refcoco, tiny_mllm_path, split="train", max_objects=1)
    assert ds.load(0, random.Random(3)).masks.shape[0] == 1


def test_eval_items_per_sentence_with_compressed_rle(refcoco, tiny_mllm_path):
    ds = _ds(refcoco, tiny_mllm_path, split="val", mode="eval")
    assert len(ds) == 2
    refs = ds.references()
    assert [r["sentence"] for r in refs] == ["the ring", "a square ring"] and len({r["key"] for r in refs}) == 2
    for i in range(2):
        raw = ds.load(i, random.Random(0))
        assert np.array_equal(raw.masks[0, 0], refcoco["ring"]) and raw.object_texts == [refs[i]["sentence"]]


def test_missing_image_is_skipped_and_counted_never_replaced(refcoco, tiny_mllm_path, tmp_path):
    import os

    ds = _ds(refcoco, tiny_mllm_path, split="val", mode="eval")
    os.remove(os.path.join(refcoco["images"], "COCO_train2014_000000000002.jpg"))
    for i in range(2):  # every item uses the missing image: each is a marker, none a substitute
        marker = ds[i]["skipped"]
        assert marker["item"] == f"RefCOCODataset[{i}]" and marker["reason"] == "missing_file"
        assert "COCO_train2014_000000000002.jpg" in marker["message"]
    assert ds.skipped["missing_file"] == 2
    strict = _ds(refcoco, tiny_mllm_path, split="val", mode="eval", on_bad_sample="raise")
    with pytest.raises(SampleError, match="image not found: .*COCO_train2014_000000000002.jpg"):
        strict[1]


def test_unknown_annotation_and_corrupt_rle(refcoco, tiny_mllm_path):
    root = refcoco["root"]
    with open(f"{root}/refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    refs.append({"ref_id": 3, "ann_id": 999, "image_id": 2, "split": "testA", "sentences": [{"sent": "ghost"}]})
    refs.append({"ref_id": 4, "ann_id": 12, "image_id": 2, "split": "testA", "sentences": [{"sent": "fine"}]})
    with open(f"{root}/refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    ds = _ds(refcoco, tiny_mllm_path, split="testA", mode="eval", seed=1)
    with pytest.raises(SampleError, match="ann_id 999 .* not in instances.json"):
        _ds(refcoco, tiny_mllm_path, split="testA", mode="eval", on_bad_sample="raise")[0]
    assert ds[0]["skipped"]["reason"] == "unknown_annotation" and ds.skipped["unknown_annotation"] == 1
    assert ds[1]["object_texts"] == ["fine"] and ds.skipped["unknown_annotation"] == 1  # the good item is served

    inst = json.load(open(f"{root}/instances.json"))
    inst["annotations"][2]["segmentation"]["counts"] = "corrupt!!"
    json.dump(inst, open(f"{root}/instances.json", "w"))
    bad = _ds(refcoco, tiny_mllm_path, split="val", mode="eval", on_bad_sample="raise")
    with pytest.raises(Exception, match="segmentation"):
        bad[0]


def test_missing_annotation_file_names_the_path(tmp_path, tiny_mllm_path):
    with pytest.raises(FileNotFoundError, match="annotation file not found: .*refs\\(unc\\).p"):
        RefCOCODataset(data_root=str(tmp_path), image_folder=str(tmp_path), model_path=tiny_mllm_path)


def test_over_long_sample_is_skipped_and_counted_never_truncated(refcoco, tiny_mllm_path):
    root = refcoco["root"]
    with open(f"{root}/refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    refs.append({"ref_id": 5, "ann_id": 12, "image_id": 2, "split": "testB", "sentences": [{"sent": "the ring"}]})
    refs.append({"ref_id": 6, "ann_id": 12, "image_id": 2, "split": "testB",
                 "sentences": [{"sent": "the " + "very " * 300 + "square ring"}]})
    with open(f"{root}/refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    ds = _ds(refcoco, tiny_mllm_path, split="testB", mode="eval", max_length=400)
    assert ds[1]["skipped"]["reason"] == "too_long" and ds.skipped["too_long"] == 1  # skipped, not cut
    s = ds[0]
    assert s["object_texts"] == ["the ring"] and s["input_ids"].numel() <= 400
    with pytest.raises(SampleError, match="tokens > max_length 400"):
        _ds(refcoco, tiny_mllm_path, split="testB", mode="eval", max_length=400, on_bad_sample="raise")[1]
