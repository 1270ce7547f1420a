"""refcoco_eval.py: cIoU / gIoU on a RefCOCO fixture in the refer API's layout with scripted predictions
(recomputed here in numpy), ground-truth audit, and the tiny model end to end with 1 and 2 processes."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import release_fixtures as rf
import scripted
from projects.desa2va.evaluation import refcoco_eval
from projects.desa2va.evaluation.common import GroundTruthError
from scripted import rle, unrle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402


@pytest.fixture
def refcoco(tmp_path, tiny_mllm_path, monkeypatch):
    gt = rf.refcoco(tmp_path / "data")
    os.makedirs(tmp_path / "model")
    os.symlink(tiny_mllm_path, tmp_path / "model" / "mllm")
    argv = ["--model_path", str(tmp_path / "model"), "--dataset", "refcoco", "--split", "val", "--data_root",
            str(tmp_path / "data"), "--image_folder", str(tmp_path / "data" / "images")]
    return tmp_path, gt, argv, monkeypatch


def image_script(preds):
    """{sentence: mask | None (no [SEG])}."""
    return {s: {"text": "Sure, [SEG].", "masks": [rle(m)]} if m is not None else {"text": "No."} for s, m in preds.items()}


def results(wd):
    return [json.loads(x) for x in open(os.path.join(wd, "results.jsonl"))]


def test_ciou_giou_recomputed(refcoco):
    tmp, gt, argv, mp = refcoco
    shift = {s: np.roll(m, (3, 5), axis=(0, 1)) for s, m in gt.values()}
    cases = {"gt": {s: m for s, m in gt.values()}, "empty": {s: np.zeros_like(m) for s, m in gt.values()},
             "perturbed": dict(shift, **{"the small one": None})}
    for case, preds in cases.items():
        wd = str(tmp / case)
        scripted.install(refcoco_eval, monkeypatch=mp, script=image_script(preds))
        m = refcoco_eval.main(argv + ["--work_dir", wd])
        recs = results(wd)
        assert [r["key"] for r in recs] == list(gt) and m["num_samples"] == 5  # the refs file's order
        inter = union = 0
        ious = []
        for r in recs:
            sentence, truth = gt[r["key"]]
            assert r["sentence"] == sentence
            pred = np.zeros_like(truth) if r["mask"] is None else unrle(r["mask"])
            if preds[sentence] is not None:
                assert np.array_equal(pred, preds[sentence])
            i, u = int((pred & truth).sum()), int((pred | truth).sum())
            assert (r["inter"], r["union"]) == (i, u) and r["iou"] == pytest.approx(i / u)
            inter, union = inter + i, union + u
            ious.append(i / u)
        assert m["ciou"] == pytest.approx(100 * inter / union, abs=1e-9)
        assert m["giou"] == pytest.approx(100 * np.mean(ious), abs=1e-9)
        if case == "gt":
            assert (m["ciou"], m["giou"]) == (100.0, 100.0)
        if case == "empty":
            assert (m["ciou"], m["giou"]) == (0.0, 0.0)
    # the miss counts: its ground truth is in cIoU's union (skipping it, as Sa2VA did, would report more)
    miss = next(r for r in recs if r["sentence"] == "the small one")
    assert miss["error"] == "no [SEG] in the answer" and miss["union"] == int(gt[miss["key"]][1].sum())
    assert m["num_failed"] == 1 and m["ciou"] < 100 * (inter - 0) / (union - miss["union"])


def test_absent_and_empty_ground_truth(refcoco):
    tmp, gt, argv, mp = refcoco
    path = tmp / "data" / "refcoco" / "instances.json"
    inst = json.load(open(path))
    inst["annotations"] = [a for a in inst["annotations"] if a["id"] != 101]  # the bottom box of image 9
    json.dump(inst, open(path, "w"))
    scripted.install(refcoco_eval, monkeypatch=mp, script=image_script({s: m for s, m in gt.values()}))
    with pytest.warns(UserWarning, match=r"1 of 5 sentences have keys absent from .*instances\.json.*: 9_1_0"):
        m = refcoco_eval.main(argv + ["--work_dir", str(tmp / "out")])
    assert m["num_absent_gt"] == 1 and m["absent_gt"] == ["9_1_0"] and m["num_failed"] == 1
    rec = next(r for r in results(tmp / "out") if r["key"] == "9_1_0")
    assert "ann_id 101" in rec["error"] and rec["iou"] == 0.0
    for a in inst["annotations"]:  # now every mask is degenerate (a polygon of no area)
        a["segmentation"] = [[1, 1, 1, 1, 1, 1]]
    json.dump(inst, open(path, "w"))
    with pytest.raises(GroundTruthError, match=r"every one of the 5 sentences .*instances\.json.*keys tried: 9_0_0 -> "
                                               r"\['ann_id 100'\]"):
        refcoco_eval.main(argv + ["--work_dir", str(tmp / "out2")])


def test_refs_and_instances_files_are_overridable(refcoco):
    tmp, gt, argv, mp = refcoco
    os.rename(tmp / "data" / "refcoco" / "refs(unc).p", tmp / "data" / "refcoco" / "my_refs.p")
    os.rename(tmp / "data" / "refcoco" / "instances.json", tmp / "data" / "refcoco" / "my_instances.json")
    scripted.install(refcoco_eval, monkeypatch=mp, script=image_script({s: m for s, m in gt.values()}))
    m = refcoco_eval.main(argv + ["--work_dir", str(tmp / "out"), "--refs_file", "my_refs.p", "--instances_file",
                                  "my_instances.json"])
    assert m["ciou"] == 100.0 and m["num_samples"] == 5


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, save_tiny_model):
    root = tmp_path_factory.mktemp("eval")
    make_synthetic_data.main(["--out", str(root / "synthetic"), "--train-images", "2", "--val-images", "3",
                              "--train-videos", "1", "--val-videos", "1", "--frames", "3"])
    save_tiny_model(root / "model", max_new_tokens=8)
    args = ["--model_path", str(root / "model"), "--dataset", "refcoco", "--split", "val", "--data_root",
            str(root / "synthetic"), "--image_folder", str(root / "synthetic" / "refcoco" / "images"), "--limit", "7"]
    return root, args


def test_one_process_and_two_processes_agree(synthetic):
    """The tiny model itself: the same records and metrics from 1 process and from 2 (torchrun, gloo); the
    scores agree with the masks written and the synthetic ground truth."""
    from pycocotools import mask as mask_utils

    root, args = synthetic
    one = str(root / "one")
    m1 = refcoco_eval.main(args + ["--work_dir", one, "--vis", "3"])
    vis = sorted(os.listdir(os.path.join(one, "vis")))  # prediction | ground truth of the first 3 sentences
    assert len(vis) == 3 and all(v.endswith(".png") for v in vis)
    recs = results(one)
    assert json.load(open(os.path.join(one, "metrics.json"))) == m1 and m1["num_samples"] == 7 == len(recs)
    refs = {r["ref_id"]: r for r in pickle.load(open(root / "synthetic" / "refcoco" / "refs(unc).p", "rb"))}
    inst = json.load(open(root / "synthetic" / "refcoco" / "instances.json"))
    anns, images = {a["id"]: a for a in inst["annotations"]}, {i["id"]: i for i in inst["images"]}
    inter = union = 0
    for r in recs:
        a = anns[refs[r["ref_id"]]["ann_id"]]
        im = images[a["image_id"]]
        seg = a["segmentation"]
        rles = mask_utils.frPyObjects(seg, im["height"], im["width"]) if isinstance(seg, list) else [seg]
        truth = mask_utils.decode(mask_utils.merge(rles) if isinstance(seg, list) else seg).astype(bool)
        pred = np.zeros_like(truth) if r["mask"] is None else unrle(r["mask"])
        assert (r["inter"], r["union"]) == (int((pred & truth).sum()), int((pred | truth).sum()))
        inter, union = inter + r["inter"], union + r["union"]
    assert m1["ciou"] == pytest.approx(100 * inter / union)

    two = str(root / "two")
    env = dict(os.environ, PORT="29533", OMP_NUM_THREADS="1")
    out = subprocess.run(["bash", os.path.join(ROOT, "projects/desa2va/evaluation/dist_test.sh"), "refcoco_eval",
                          args[1], "2"] + args[2:] + ["--work_dir", two], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.load(open(os.path.join(two, "metrics.json"))) == m1 and results(two) == recs
    assert len(os.listdir(os.path.join(two, "partial"))) == 2


def test_bad_paths_fail_before_loading(synthetic, capsys):
    root, args = synthetic
    with pytest.raises(SystemExit):
        refcoco_eval.main(args[:7] + [str(root / "nowhere")] + args[8:])
    assert f"not found: {root / 'nowhere'}" in capsys.readouterr().err


def test_override_reaches_the_loaded_model(synthetic, monkeypatch):
    root, args = synthetic
    seen = {}
    real = refcoco_eval.load_model

    def spy(path, device, **overrides):
        model = real(path, device, **overrides)
        seen.update(max_new_tokens=model.max_new_tokens, reprompt_iters=model.reprompt_iters)
        return model
    monkeypatch.setattr(refcoco_eval, "load_model", spy)
    refcoco_eval.main(args + ["--work_dir", str(root / "override"), "--limit", "1",
                              "--override", "max_new_tokens=3", "reprompt_iters=0"])
    assert seen == {"max_new_tokens": 3, "reprompt_iters": 0}  # saved: 8 and the default 1
