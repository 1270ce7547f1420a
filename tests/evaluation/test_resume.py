"""--resume for real, in every evaluation script: the script runs in a subprocess (with a scripted model
slowed down), is killed by SIGKILL once it has written k results, and is rerun with --resume. The result
must hold exactly one record per sample and equal an uninterrupted run's, metrics included."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import release_fixtures as rf
import scripted
from projects.desa2va.evaluation import (gcg_eval, metrics, ref_vos_eval, refcoco_eval, region_caption_eval,
                                         vqa_eval)
from scripted import rle

HERE = os.path.dirname(os.path.abspath(__file__))


def refcoco_case(tmp):
    gt = rf.refcoco(tmp / "data")
    script = {s: {"text": "Sure, [SEG].", "masks": [rle(np.roll(m, k, axis=1))]} for k, (s, m) in enumerate(gt.values())}
    return refcoco_eval, script, ["--dataset", "refcoco", "--split", "val", "--data_root", str(tmp / "data"),
                                  "--image_folder", str(tmp / "data" / "images")], len(gt), len(gt), 2


def ref_vos_case(tmp):
    gt = rf.mevis_u(tmp / "valid_u")
    script = {text: {"text": "Sure, [SEG].", "masks": [[rle(x) for x in np.roll(m, k, axis=2)]]}
              for k, (text, m) in enumerate(gt.values())}
    return ref_vos_eval, script, ["--dataset", "MEVIS_U", "--data_root", str(tmp / "valid_u")], 9, 3, 1  # 3 videos


def gcg_case(tmp):
    gt = rf.gcg(tmp)
    script = {f"@image={50 * (n + 1)}": {"text": f"<p> {labels[0]} </p> [SEG] is here.", "masks": [rle(ms[-1])]}
              for n, (caption, labels, ms) in enumerate(gt.values())}
    return gcg_eval, script, ["--gt_dir", str(tmp), "--image_folder", str(tmp / "images"), "--bert_path",
                              str(tmp / "no_bert")], 3, 3, 1


def region_case(tmp):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp / "a.jpg")
    boxes = [[0, 0, 10, 20], [20, 20, 5, 5], [10, 5, 8, 30], [0, 30, 40, 10]]  # 200, 25, 240, 400 pixels
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 40}],
            "annotations": [{"id": 10 + k, "image_id": 1, "bbox": b, "caption": f"region number {k}"}
                            for k, b in enumerate(boxes)]}
    (tmp / "caps.json").write_text(json.dumps(data))
    script = {f"@region={b[2] * b[3]}": {"text": f"region number {k % 2}"} for k, b in enumerate(boxes)}
    return region_caption_eval, script, ["--annotation_file", str(tmp / "caps.json"), "--image_folder", str(tmp)], 4, 4, 2


def vqa_case(tmp):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp / "a.png")
    items = [{"id": f"q{k}", "image": "a.png", "question": f"What is item {k}?", "answer": f"thing {k}"}
             for k in range(4)]
    (tmp / "qa.json").write_text(json.dumps(items))
    script = {f"What is item {k}?": {"text": f"thing {k if k != 2 else 0}"} for k in range(4)}
    return vqa_eval, script, ["--data_file", str(tmp / "qa.json"), "--image_folder", str(tmp)], 4, 4, 2


CASES = {"refcoco_eval": refcoco_case, "ref_vos_eval": ref_vos_case, "gcg_eval": gcg_case,
         "region_caption_eval": region_case, "vqa_eval": vqa_case}


def outputs(wd):
    recs = [json.loads(x) for x in open(os.path.join(wd, "results.jsonl"))]
    return recs, json.load(open(os.path.join(wd, "metrics.json")))


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_run_resumes_to_the_uninterrupted_result(name, tmp_path, tiny_mllm_path, monkeypatch):
    os.makedirs(tmp_path / "model")
    os.symlink(tiny_mllm_path, tmp_path / "model" / "mllm")
    # (module, script, arguments, records, samples = keys of the shards (ref_vos: videos), kill after k samples)
    module, script, argv, total, samples, k = CASES[name](tmp_path)
    argv = ["--model_path", str(tmp_path / "model")] + argv
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)  # as in the subprocesses, whose PATH has no java
    scripted.install(module, script, monkeypatch)
    module.main(argv + ["--work_dir", str(tmp_path / "whole")])
    whole = outputs(tmp_path / "whole")
    assert len(whole[0]) == total

    (tmp_path / "script.json").write_text(json.dumps(script))
    cmd = [sys.executable, os.path.join(HERE, "scripted.py"), str(tmp_path / "script.json"), name] + argv + \
        ["--work_dir", str(tmp_path / "cut")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=os.path.dirname(sys.executable), SCRIPTED_DELAY="0.4")
    partial = tmp_path / "cut" / "partial" / "rank0.jsonl"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= k:
            proc.kill()
            break
        time.sleep(0.02)
    assert proc.wait() == -9, "the run ended before it could be killed"
    done = [json.loads(x)["key"] for x in partial.read_text().splitlines() if x.endswith("}")]
    assert k <= len(done) < samples and not (tmp_path / "cut" / "results.jsonl").exists()

    env["SCRIPTED_DELAY"] = "0"
    out = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    recs, m = outputs(tmp_path / "cut")
    assert [r["key"] for r in recs] == [r["key"] for r in whole[0]] and len({r["key"] for r in recs}) == total
    assert (recs, m) == whole
    keys = [json.loads(x)["key"] for x in partial.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == samples  # the finished samples were not run again
