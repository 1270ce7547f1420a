"""ref_vos_eval.py on benchmarks in their release layouts: DAVIS17 (counter-keyed mask_dict.pkl), MeViS
valid_u, ReVOS (types 0/1/2, per-frame foreground), Ref-SAV, and the server submissions of MeViS valid /
Ref-YouTube-VOS valid. A scripted model predicts the ground truth, empty masks or perturbed masks; every
metric is recomputed here in numpy (numpy_metrics.py) from results.jsonl and the fixture's masks."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import numpy_metrics as nm
import release_fixtures as rf
import scripted
from conftest import ScriptedHead
from projects.desa2va.evaluation import common, ref_vos_eval
from projects.desa2va.evaluation.common import GroundTruthError
from scripted import rle, unrle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_mllm_path):
    """What the readers need of a model folder (its tokenizer); the scripted model stands in for the rest."""
    d = tmp_path_factory.mktemp("scripted_model")
    os.symlink(tiny_mllm_path, d / "mllm")
    return str(d)


def perturb(masks, k):
    """A wrong but non-trivial prediction: shifted by (1, 2) px on even frames, a false-positive strip on odd."""
    out = masks.copy()
    for t in range(len(out)):
        if (t + k) % 2 == 0:
            out[t] = np.roll(out[t], (1, 2), axis=(0, 1))
        else:
            out[t, -3:, :5] = True
    return out


PREDICTIONS = {"gt": lambda m, k: m, "empty": lambda m, k: np.zeros_like(m), "perturbed": perturb}


def video_script(preds):
    """{expression: (T, H, W) prediction | None (no [SEG] in the answer)}."""
    return {text: {"text": "Sure, [SEG].", "masks": [[rle(x) for x in m]]} if m is not None else {"text": "No."}
            for text, m in preds.items()}


@pytest.fixture
def run(monkeypatch):
    """run(module, script, argv) -> (metrics, the scripted model)."""
    def go(module, script, argv):
        model = scripted.install(module, script, monkeypatch)
        return module.main(argv), model
    return go


def results(wd):
    return [json.loads(x) for x in open(os.path.join(wd, "results.jsonl"))]


def check_jf(metrics, recs, gt, preds):
    """Per expression and in summary, J and F as numpy computes them from results.jsonl's masks, which must be
    the scripted predictions."""
    js, fs = [], []
    for r in recs:
        text, truth = gt[(r["vid"], r["exp_id"])][:2]
        pred = np.stack([unrle(x) for x in r["masks"]])
        assert np.array_equal(pred, preds[text]), r["key"]
        j, f = nm.video_jf(pred, truth)
        assert r["J"] == pytest.approx(j, abs=1e-12) and r["F"] == pytest.approx(f, abs=1e-12)
        js.append(j)
        fs.append(f)
    J, F = 100 * np.mean(js), 100 * np.mean(fs)
    assert metrics["J"] == pytest.approx(J, abs=1e-9) and metrics["F"] == pytest.approx(F, abs=1e-9)
    assert metrics["J&F"] == pytest.approx((J + F) / 2, abs=1e-9)
    return J, F


def test_davis_counter_keys_sorted_frames_and_known_values(tmp_path, model_dir, run):
    root = tmp_path / "davis17"
    gt = rf.davis(root)
    keys = sorted(f"{v}/{e}" for v, e in gt)
    for case, fn in PREDICTIONS.items():
        preds = {text: fn(m, k) for k, (text, m) in enumerate(gt.values())}
        wd = str(tmp_path / case)
        m, model = run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", "DAVIS",
                                                             "--data_root", str(root), "--work_dir", wd])
        recs = results(wd)
        assert [r["key"] for r in recs] == keys and m["num_expressions"] == 3 and m["num_failed"] == 0
        assert m["num_empty_gt"] == 0 and m["num_absent_gt"] == 0
        J, F = check_jf(m, recs, gt, preds)
        if case == "gt":
            assert (m["J"], m["F"], m["J&F"]) == (100.0, 100.0, 100.0)
        if case == "empty":  # J = F = 1 only on the one frame (of 9) where the object is gone
            assert J == pytest.approx(100 / 9) and F == pytest.approx(100 / 9)
        # every video's frames reached the model in sorted name order (bear's are listed 00010, 00000, 00005)
        assert all(seen == [rf.frame_value(k) for k in range(3)] for seen in model.frames_seen)


def test_davis_read_by_anno_id_stops_naming_the_mask_file(tmp_path, model_dir, run):
    root = tmp_path / "davis17"
    rf.davis(root)
    # today's mistake: the MeViS reader, which takes the expression file's (absent) anno_ids as keys
    argv = ["--model_path", model_dir, "--dataset", "MEVIS_U", "--data_root", str(root), "--frames_dir",
            "valid/JPEGImages", "--expression_file", "meta_expressions/valid/meta_expressions.json",
            "--mask_file", "valid/mask_dict.pkl", "--work_dir", str(tmp_path / "out")]
    with pytest.raises(GroundTruthError, match=r"every one of the 3 expressions .*valid/mask_dict\.pkl.*keys tried: "
                                               r"bear/0 -> \[\]"):
        run(ref_vos_eval, {}, argv)


def test_davis_command_prints_jf_on_non_empty_ground_truth(tmp_path, save_tiny_model):
    """The seed README's command, as typed, in a folder holding data/video_datas/davis17 in the release layout,
    with a real (untrained, tiny) model: it never emits [SEG], so every prediction is empty: J&F = 100 / 9."""
    rf.davis(tmp_path / "data" / "video_datas" / "davis17")
    model = save_tiny_model(tmp_path / "model", max_new_tokens=4)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "projects/desa2va/evaluation/ref_vos_eval.py"),
                          "--model_path", model, "--dataset", "DAVIS"], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("J&F "))
    assert float(line.split()[1]) == pytest.approx(100 / 9, abs=1e-4)
    m = json.load(open(tmp_path / "work_dirs" / "eval" / "davis" / "metrics.json"))
    assert m["num_empty_gt"] == 0 and m["num_failed"] == 3  # no [SEG]: recorded, scored as empty masks


def test_empty_ground_truth_is_named_and_counted(tmp_path, model_dir, run):
    import pickle

    root = tmp_path / "davis17"
    gt = rf.davis(root)
    path = root / "valid" / "mask_dict.pkl"
    masks = pickle.load(open(path, "rb"))
    masks["0"] = [None, None, None]  # bear/0: the object never appears
    pickle.dump(masks, open(path, "wb"))
    preds = {text: m for text, m in gt.values()}
    with pytest.warns(UserWarning, match=r"1 of 3 expressions have empty ground truth on every frame .*: bear/0"):
        m, _ = run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", "DAVIS", "--data_root",
                                                        str(root), "--work_dir", str(tmp_path / "out")])
    assert m["num_empty_gt"] == 1 and m["empty_gt"] == ["bear/0"]


def test_mevis_u_unions_and_partial_predictions(tmp_path, model_dir, run):
    root = tmp_path / "valid_u"
    gt = rf.mevis_u(root)
    for case, fn in PREDICTIONS.items():
        preds = {text: fn(m, k) for k, (text, m) in enumerate(gt.values())}
        preds["the right shape 1"] = None  # no [SEG]: scored as empty masks, recorded with the reason
        wd = str(tmp_path / case)
        m, _ = run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", "MEVIS_U",
                                                        "--data_root", str(root), "--work_dir", wd])
        recs = results(wd)
        assert len(recs) == 9 and m["num_failed"] == 1
        assert next(r for r in recs if r["key"] == "vid1/1")["error"] == "no [SEG] in the answer"
        preds["the right shape 1"] = np.zeros((3, rf.H, rf.W), bool)
        check_jf(m, recs, gt, preds)
    # "both shapes" is the union of two anno_ids: predicting one of them is not enough
    assert next(r for r in recs if r["key"] == "vid0/2")["J"] < 1


def revos_expected(recs, gt, foreground, preds):
    by_type = {0: [], 1: [], 2: []}
    for r in recs:
        text, truth, t = gt[(r["vid"], r["exp_id"])]
        pred = np.stack([unrle(x) for x in r["masks"]])
        assert np.array_equal(pred, preds[text]), r["key"]
        jj, ff = nm.video_jf(pred, truth)
        vals = {"J": jj, "F": ff, "A": nm.accuracy(pred, truth), "R": nm.robustness(pred, truth, foreground[r["vid"]])}
        for k, v in vals.items():
            assert r[k] == pytest.approx(v, abs=1e-12), (r["key"], k)
        by_type[t].append(vals)
    out = {}
    for t, name in ((0, "referring"), (1, "reasoning"), (2, "no_target")):
        for k in "JFAR":
            out[f"{name}/{k}"] = 100 * np.mean([v[k] for v in by_type[t]])
        out[f"{name}/J&F"] = (out[f"{name}/J"] + out[f"{name}/F"]) / 2
    for k in ("J", "F", "A", "R", "J&F"):
        out[f"overall/{k}"] = (out[f"referring/{k}"] + out[f"reasoning/{k}"]) / 2
    return out


def test_revos_types_accuracy_and_robustness_on_the_foreground_file(tmp_path, model_dir, run):
    root = tmp_path / "revos"
    gt, foreground = rf.revos(root)
    for case in ("gt", "perturbed"):
        preds = {text: PREDICTIONS[case](m, k) for k, (text, m, _) in enumerate(gt.values())}
        wd = str(tmp_path / case)
        m, model = run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", "REVOS",
                                                            "--data_root", str(root), "--work_dir", wd])
        recs = results(wd)
        assert len(recs) == 8 and m["num_failed"] == 0 and m["num_empty_gt"] == 0  # type 2 is empty by design
        expected = revos_expected(recs, gt, foreground, preds)
        assert set(expected) <= set(m)
        for k, v in expected.items():
            assert m[k] == pytest.approx(v, abs=1e-9), k
        if case == "gt":
            assert all(m[f"overall/{k}"] == 100.0 for k in ("J", "F", "A", "R"))
    # R divides by each frame's foreground, which holds an object no expression names: not by the union of the
    # expressions' masks over the video (which would give a lower R here)
    assert 0 < m["overall/R"] < 100
    # the reasoning question is asked as it is
    assert any(q.startswith("which object would you sit on in video 0?") for q in model.questions)


def test_revos_foreground_file_is_required_and_overridable(tmp_path, model_dir, capsys, run):
    root = tmp_path / "revos"
    gt, _ = rf.revos(root)
    os.rename(root / "mask_dict_foreground.json", root / "fg.json")
    argv = ["--model_path", model_dir, "--dataset", "REVOS", "--data_root", str(root), "--work_dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        run(ref_vos_eval, {}, argv)
    assert f"not found: {root / 'mask_dict_foreground.json'}" in capsys.readouterr().err
    preds = {text: m for text, m, _ in gt.values()}
    m, _ = run(ref_vos_eval, video_script(preds), argv + ["--foreground_file", "fg.json"])
    assert m["overall/R"] == 100.0
    m, _ = run(ref_vos_eval, video_script(preds), argv + ["--foreground_file", "none"])  # no R, the rest stays
    assert "overall/R" not in m and m["overall/A"] == 100.0 and m["overall/J&F"] == 100.0
    with pytest.raises(SystemExit):  # R is ReVOS's
        run(ref_vos_eval, {}, ["--model_path", model_dir, "--dataset", "MEVIS_U", "--foreground_file", "fg.json"])


def check_submission(zip_path, exps, preds, tmp_path):
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        assert all(n.startswith("Annotations/") for n in z.namelist())
        z.extractall(tmp_path / "unzipped")
    expected = sorted(f"Annotations/{v}/{e}/{f}.png" for (v, e), (_, frames) in exps.items() for f in frames)
    assert names == expected
    for (vid, exp_id), (text, frames) in exps.items():
        for t, frame in enumerate(frames):  # frames in sorted order: prediction t belongs to the t-th sorted name
            im = Image.open(tmp_path / "unzipped" / "Annotations" / vid / exp_id / f"{frame}.png")
            arr = np.asarray(im)
            assert im.mode == "L" and im.size == (rf.W, rf.H) and set(np.unique(arr)) <= {0, 255}
            want = np.zeros((rf.H, rf.W), bool) if preds[text] is None else preds[text][t]
            assert np.array_equal(arr == 255, want), (vid, exp_id, frame)


@pytest.mark.parametrize("dataset", ["MEVIS", "REFYTVOS"])
def test_server_submission_layout(tmp_path, model_dir, dataset, run):
    root = tmp_path / "valid"
    exps = rf.mevis_valid(root)
    rng = np.random.default_rng(0)
    preds = {text: rng.random((len(frames), rf.H, rf.W)) < 0.3 for text, frames in exps.values()}
    preds["the dog of vb"] = None  # no [SEG]: an all-zero PNG per frame, the expression is not left out
    (tmp_path / "out" / "Annotations" / "stale").mkdir(parents=True)  # an earlier run's file is not zipped
    (tmp_path / "out" / "Annotations" / "stale" / "x.png").write_bytes(b"")
    extra = ["--frames_dir", "JPEGImages", "--expression_file", "meta_expressions.json"] if dataset == "REFYTVOS" else []
    m, _ = run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", dataset, "--data_root",
                                                    str(root), "--work_dir", str(tmp_path / "out")] + extra)
    assert m["num_expressions"] == 4 and m["num_failed"] == 1 and "J" not in m
    check_submission(m["submission"], exps, preds, tmp_path)


def test_submission_from_two_processes(tmp_path, model_dir):
    """torchrun, 2 processes (gloo): each writes its share of the videos, rank 0 checks and zips."""
    root = tmp_path / "valid"
    exps = rf.mevis_valid(root)
    rng = np.random.default_rng(1)
    preds = {text: rng.random((len(frames), rf.H, rf.W)) < 0.3 for text, frames in exps.values()}
    (tmp_path / "script.json").write_text(json.dumps(video_script(preds)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           os.path.join(ROOT, "tests/evaluation/scripted.py"), str(tmp_path / "script.json"), "ref_vos_eval",
           "--model_path", model_dir, "--dataset", "MEVIS", "--data_root", str(root), "--work_dir", str(tmp_path / "o")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(os.listdir(tmp_path / "o" / "partial")) == 2
    check_submission(tmp_path / "o" / "submission.zip", exps, preds, tmp_path)


def test_submission_refused_when_frames_cannot_be_read(tmp_path, model_dir, run):
    from projects.desa2va.evaluation.submission import SubmissionError

    root = tmp_path / "valid"
    exps = rf.mevis_valid(root)
    for f in (root / "JPEGImages" / "vb").iterdir():
        f.write_bytes(b"not a jpeg")
    preds = {text: np.zeros((len(frames), rf.H, rf.W), bool) for text, frames in exps.values()}
    with pytest.raises(SubmissionError, match=r"2 expressions have no masks .*vb/0"):
        run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", "MEVIS", "--data_root",
                                                 str(root), "--work_dir", str(tmp_path / "out")])
    recs = results(tmp_path / "out")  # the results are kept, the failure recorded
    assert [r["key"] for r in recs] == ["va/0", "va/1", "vb/0", "vb/1"] and "cannot read image" in recs[2]["error"]
    assert not (tmp_path / "out" / "submission.zip").exists()


def write_refsav(folder):
    """Ref-SAV release layout: an mp4 (24 fps) + SA-V `_manual.json` masklets on every 4th frame."""
    import cv2

    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "sav_1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24, (64, 32))
    for i in range(12):
        writer.write(np.full((32, 64, 3), 10 * i, np.uint8))
    writer.release()
    objs = [[rf.box(5, 20, 4 * k, 4 * k + 15, 32, 64), rf.box(8, 30, 40, 52, 32, 64)] for k in range(3)]
    (folder / "sav_1_manual.json").write_text(json.dumps({"masklet": [[rle(m) for m in ms] for ms in objs]}))
    gt = {"0": np.stack([o[0] for o in objs]), "1": np.stack([o[1] for o in objs])}
    ann = {"sav_1": {"video_path": "sav_1.mp4", "anno_path": "sav_1_manual.json", "objects": {
        "0": {"formated": "A box that slides to the right.", "short_caps": ["the sliding box"]},
        "1": {"formated": "A box that stays still.", "short_caps": ["the still box"]}}},
           "sav_2": {"video_path": "missing.mp4", "anno_path": "sav_1_manual.json", "objects": {
               "0": {"formated": "Nothing at all.", "short_caps": ["nothing"]}}}}
    return ann, gt


def test_refsav_long_and_short_captions(tmp_path, model_dir, run):
    ann, gt = write_refsav(tmp_path / "sam_v_full")
    (tmp_path / "ref_sav_val.json").write_text(json.dumps(ann))
    texts = {"A box that slides to the right.": "0", "the sliding box": "0", "A box that stays still.": "1",
             "the still box": "1"}
    preds = {t.rstrip("."): gt[o] if "slid" in t else perturb(gt[o], 0) for t, o in texts.items()}  # asked without "."
    wd = tmp_path / "out"
    m, _ = run(ref_vos_eval, video_script(preds), ["--model_path", model_dir, "--dataset", "REFSAV", "--data_root",
                                                    str(tmp_path / "sam_v_full"), "--expression_file",
                                                    str(tmp_path / "ref_sav_val.json"), "--work_dir", str(wd)])
    recs = results(wd)
    assert [r["key"] for r in recs] == ["sav_1/0/long", "sav_1/0/short", "sav_1/1/long", "sav_1/1/short",
                                        "sav_2/0/long", "sav_2/0/short"]
    assert m["failed_videos"] == 1 and m["num_failed"] == 2 and m["num_empty_gt"] == 0  # recorded, not dropped
    per = {}
    for r in recs[:4]:
        j, f = nm.video_jf(np.stack([unrle(x) for x in r["masks"]]), gt[r["obj_id"]])
        assert r["J"] == pytest.approx(j) and r["F"] == pytest.approx(f)
        per.setdefault(r["caption"], []).append((j, f))
    for kind in ("long", "short"):  # the failed video's captions count as 0
        j = 100 * sum(x[0] for x in per[kind]) / 3
        f = 100 * sum(x[1] for x in per[kind]) / 3
        assert m[f"{kind}/J"] == pytest.approx(j) and m[f"{kind}/F"] == pytest.approx(f)
        assert m[f"{kind}/J&F"] == pytest.approx((j + f) / 2)
    assert m["overall/J"] == pytest.approx((m["long/J"] + m["short/J"]) / 2)
    assert m["long/J"] < 100 * 2 / 3  # the still box was predicted wrongly


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, save_tiny_model):
    root = tmp_path_factory.mktemp("vos")
    make_synthetic_data.main(["--out", str(root / "synthetic"), "--train-images", "1", "--val-images", "1",
                              "--train-videos", "1", "--val-videos", "2", "--frames", "4", "--size", "64"])
    save_tiny_model(root / "model", max_new_tokens=8, num_keyframes=2)
    return root


def test_real_model_end_to_end_with_vis(synthetic, monkeypatch):
    """The tiny model itself (scripted to answer "[SEG]", so masks are decoded and propagated) on the synthetic
    MeViS-format split: one result per expression, J and F recomputed from the mask file, --vis outputs."""
    real = common.load_model

    def load(path, device, **kw):
        model = real(path, device, **kw)
        tok = model.mllm.tokenizer
        head = ScriptedHead([model.mllm.seg_token_id, tok.convert_tokens_to_ids("<|im_end|>")], len(tok))
        model.mllm.causal_lm.lm_head = head
        real_generate = model.mllm.generate

        def generate(*args, **kwargs):  # the script restarts with every answer
            head.step = 0
            return real_generate(*args, **kwargs)
        model.mllm.generate = generate
        return model
    monkeypatch.setattr(ref_vos_eval, "load_model", load)
    root = synthetic / "synthetic" / "mevis" / "valid_u"
    wd = str(synthetic / "mevis_u")
    m = ref_vos_eval.main(["--model_path", str(synthetic / "model"), "--dataset", "MEVIS_U", "--data_root", str(root),
                           "--work_dir", wd, "--vis", "2"])
    meta = json.load(open(root / "meta_expressions.json"))["videos"]
    masks = json.load(open(root / "mask_dict.json"))
    recs = results(wd)
    assert [r["key"] for r in recs] == sorted(f"{v}/{e}" for v, d in meta.items() for e in d["expressions"])
    assert m["num_failed"] == 0 and all(r["answer"] == "[SEG]" for r in recs)
    js, fs = [], []
    for r in recs:
        truth = np.stack([np.any([unrle(masks[str(a)][t]) for a in meta[r["vid"]]["expressions"][r["exp_id"]]["anno_id"]],
                                 axis=0) for t in range(4)])
        j, f = nm.video_jf(np.stack([unrle(x) for x in r["masks"]]), truth)
        js.append(j)
        fs.append(f)
    assert m["J"] == pytest.approx(100 * np.mean(js)) and m["F"] == pytest.approx(100 * np.mean(fs))
    vis = sorted(os.listdir(os.path.join(wd, "vis")))  # --vis 2: a clip and a strip for the first 2 expressions
    assert len(vis) == 4 and sorted(os.path.splitext(v)[1] for v in vis) == [".mp4", ".mp4", ".png", ".png"]
