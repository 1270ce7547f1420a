"""ref_vos_eval.py on the synthetic MeViS-format split: metrics, one result per expression, the
submission layout, and ReVOS-style question expressions."""
import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from projects.desa2va.evaluation import common, ref_vos_eval
from conftest import ScriptedHead

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory, save_tiny_model):
    root = tmp_path_factory.mktemp("vos")
    make_synthetic_data.main(["--out", str(root / "synthetic"), "--train-images", "1", "--val-images", "1",
                              "--train-videos", "1", "--val-videos", "2", "--frames", "4", "--size", "64"])
    save_tiny_model(root / "model", max_new_tokens=8, num_keyframes=2)
    return root


@pytest.fixture
def seg_answering(monkeypatch):
    """The tiny model, answering "[SEG]" to every question (so masks are decoded and propagated)."""
    real = common.load_model

    def load(path, device, **kw):
        model = real(path, device, **kw)
        tok = model.mllm.tokenizer
        model.mllm.causal_lm.lm_head = ScriptedHead([model.mllm.seg_token_id, tok.convert_tokens_to_ids("<|im_end|>")],
                                                    len(tok))
        head = model.mllm.causal_lm.lm_head
        real_generate = model.mllm.generate

        def generate(*args, **kwargs):  # the script restarts with every answer
            head.step = 0
            return real_generate(*args, **kwargs)
        model.mllm.generate = generate
        return model
    monkeypatch.setattr(ref_vos_eval, "load_model", load)


def _args(root, *extra):
    return ["--model_path", str(root / "model"), "--data_root", str(root / "synthetic" / "mevis" / "valid_u")] + list(extra)


def test_mevis_u_metrics_and_one_result_per_expression(setup, seg_answering):
    root = setup
    wd = str(root / "mevis_u")
    metrics = ref_vos_eval.main(_args(root, "--dataset", "MEVIS_U", "--work_dir", wd, "--vis", "2"))
    meta = json.load(open(root / "synthetic" / "mevis" / "valid_u" / "meta_expressions.json"))["videos"]
    expected = sorted(f"{v}/{e}" for v, d in meta.items() for e in d["expressions"])
    lines = [json.loads(x) for x in open(os.path.join(wd, "results.jsonl"))]
    assert [r["key"] for r in lines] == expected and metrics["num_expressions"] == len(expected)
    assert metrics["num_failed"] == 0 and all(r["answer"] == "[SEG]" for r in lines)
    assert all(0 <= metrics[k] <= 100 for k in ("J", "F", "J&F"))
    assert abs(metrics["J&F"] - (metrics["J"] + metrics["F"]) / 2) < 1e-9
    assert all(len(r["masks"]) == 4 for r in lines)  # one RLE per frame
    vis = sorted(os.listdir(os.path.join(wd, "vis")))  # --vis 2: a clip and a strip for the first 2 expressions
    assert len(vis) == 4 and sorted(os.path.splitext(v)[1] for v in vis) == [".mp4", ".mp4", ".png", ".png"]


def test_submission_has_one_png_per_frame_per_expression(setup, seg_answering):
    root = setup
    wd = str(root / "mevis")
    metrics = ref_vos_eval.main(_args(root, "--dataset", "MEVIS", "--work_dir", wd))  # no ground truth
    assert os.path.isfile(metrics["submission"])
    meta = json.load(open(root / "synthetic" / "mevis" / "valid_u" / "meta_expressions.json"))["videos"]
    for vid, d in meta.items():
        for exp_id in d["expressions"]:
            folder = os.path.join(wd, "Annotations", vid, exp_id)
            pngs = sorted(os.listdir(folder))
            assert pngs == [f"{f}.png" for f in d["frames"]]
            values = set(np.unique(np.asarray(Image.open(os.path.join(folder, pngs[0])))))
            assert values <= {0, 255}


def test_revos_question_expressions_are_evaluated(setup, seg_answering):
    root = setup
    src = root / "synthetic" / "mevis" / "valid_u"
    revos = root / "revos"
    shutil.copytree(src / "JPEGImages", revos)
    shutil.copy(src / "mask_dict.json", revos)
    meta = json.load(open(src / "meta_expressions.json"))
    for v in meta["videos"].values():
        for k, e in v["expressions"].items():
            e["type_id"] = int(k) % 2
            if e["type_id"] == 1:
                e["exp"] = f"which shape would you pick if you wanted {e['exp']}?"
    (revos / "meta_expressions_valid_.json").write_text(json.dumps(meta))
    metrics = ref_vos_eval.main(["--model_path", str(root / "model"), "--dataset", "REVOS", "--data_root",
                                 str(revos), "--work_dir", str(root / "revos_out")])
    assert metrics["num_failed"] == 0
    for key in ("referring/J&F", "reasoning/J&F", "overall/J&F", "overall/A", "overall/R"):
        assert key in metrics
    lines = [json.loads(x) for x in open(root / "revos_out" / "results.jsonl")]
    assert any(r["exp"].endswith("?") and "J" in r for r in lines)


def test_refsav_long_and_short_captions(setup, seg_answering, tmp_path):
    import cv2
    from pycocotools import mask as mask_utils

    folder = tmp_path / "sam_v_full"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "sav_1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24, (64, 32))
    for i in range(12):
        writer.write(np.full((32, 64, 3), 10 * i, np.uint8))
    writer.release()

    def rle(x0):
        m = np.zeros((32, 64), np.uint8)
        m[5:20, x0:x0 + 15] = 1
        return {"size": [32, 64], "counts": mask_utils.encode(np.asfortranarray(m))["counts"].decode()}
    (folder / "sav_1_manual.json").write_text(json.dumps({"masklet": [[rle(k), rle(40)] for k in range(3)]}))
    ann = {"sav_1": {"video_path": "sav_1.mp4", "anno_path": "sav_1_manual.json", "objects": {
        "0": {"formated": "A box that slides to the right.", "short_caps": ["the sliding box"]},
        "1": {"formated": "A box that stays still.", "short_caps": ["the still box"]}}},
           "sav_2": {"video_path": "missing.mp4", "anno_path": "sav_1_manual.json", "objects": {
               "0": {"formated": "Nothing.", "short_caps": ["nothing"]}}}}
    (tmp_path / "ref_sav_val.json").write_text(json.dumps(ann))
    wd = tmp_path / "out"
    m = ref_vos_eval.main(["--model_path", str(setup / "model"), "--dataset", "REFSAV", "--data_root", str(folder),
                           "--expression_file", str(tmp_path / "ref_sav_val.json"), "--work_dir", str(wd)])
    keys = [json.loads(x)["key"] for x in open(wd / "results.jsonl")]
    assert keys == ["sav_1/0/long", "sav_1/0/short", "sav_1/1/long", "sav_1/1/short", "sav_2/0/long", "sav_2/0/short"]
    assert m["failed_videos"] == 1 and m["num_failed"] == 2  # the missing video is recorded, not dropped
    for k in ("long/J&F", "short/J&F", "overall/J&F"):
        assert 0 <= m[k] <= 100
    first = json.loads(open(wd / "results.jsonl").readline())
    assert len(first["masks"]) == 3 and first["answer"] == "[SEG]"  # one mask per annotated frame
