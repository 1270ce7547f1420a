"""refcoco_eval.py end to end on the synthetic RefCOCO-format split with a tiny saved model:
1 process == 2 processes (torchrun, gloo), and a resumed run completes a killed one."""
import json
import os
import subprocess
import sys

import pytest

from projects.desa2va.evaluation import refcoco_eval
from projects.desa2va.evaluation.sharding import run_shard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory, save_tiny_model):
    root = tmp_path_factory.mktemp("eval")
    make_synthetic_data.main(["--out", str(root / "synthetic"), "--train-images", "2", "--val-images", "3",
                              "--train-videos", "1", "--val-videos", "1", "--frames", "3"])
    save_tiny_model(root / "model", max_new_tokens=8)
    args = ["--model_path", str(root / "model"), "--dataset", "refcoco", "--split", "val", "--data_root",
            str(root / "synthetic"), "--image_folder", str(root / "synthetic" / "refcoco" / "images"), "--limit", "7"]
    return root, args


def _read(work_dir):
    metrics = json.load(open(os.path.join(work_dir, "metrics.json")))
    keys = [json.loads(line)["key"] for line in open(os.path.join(work_dir, "results.jsonl"))]
    return metrics, keys


def test_one_process_two_processes_and_resume(setup):
    root, args = setup
    one = str(root / "one")
    m1 = refcoco_eval.main(args + ["--work_dir", one, "--vis", "3"])
    metrics1, keys1 = _read(one)
    vis = sorted(os.listdir(os.path.join(one, "vis")))  # prediction | ground truth of the first 3 sentences
    assert len(vis) == 3 and all(v.endswith(".png") for v in vis)
    assert metrics1 == m1 and m1["num_samples"] == 7 and len(set(keys1)) == 7
    assert 0.0 <= m1["ciou"] <= 1.0 and m1["num_failed"] <= 7
    first = json.loads(open(os.path.join(one, "results.jsonl")).readline())
    assert {"key", "sentence", "inter", "union", "iou", "mask"} <= set(first)

    two = str(root / "two")
    env = dict(os.environ, PORT="29533", OMP_NUM_THREADS="1")
    out = subprocess.run(["bash", os.path.join(ROOT, "projects/desa2va/evaluation/dist_test.sh"), "refcoco_eval",
                          args[1], "2"] + args[2:] + ["--work_dir", two], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics2, keys2 = _read(two)
    assert metrics2 == metrics1 and keys2 == keys1  # no loss, no duplicate, same order
    assert len(os.listdir(os.path.join(two, "partial"))) == 2

    # a run whose rank 1 died: rank 0's shard is on disk, then a single resumed process completes the set
    killed = str(root / "killed")
    records = {json.loads(line)["key"]: json.loads(line) for line in open(os.path.join(one, "results.jsonl"))}
    run_shard(keys1, lambda k: {x: v for x, v in records[k].items() if x != "key"}, killed, 0, 2)
    m3 = refcoco_eval.main(args + ["--work_dir", killed, "--resume"])
    assert m3 == m1 and _read(killed)[1] == keys1


def test_bad_paths_fail_before_loading(setup, capsys):
    root, args = setup
    with pytest.raises(SystemExit):
        refcoco_eval.main(args[:7] + [str(root / "nowhere")] + args[8:])
    assert "not found" in capsys.readouterr().err


def test_override_reaches_the_loaded_model(setup, monkeypatch):
    root, args = setup
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
