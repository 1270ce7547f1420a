"""The whole pipeline on the CPU, on the embedded default (the tiny foundations + the synthetic benchmark):

    bash tools/quickstart.sh            # sets up the venv, then runs this file

1. installs the committed tiny foundations into `pretrained/tiny` and writes `data/synthetic` when missing;
2. exports the untrained stage-2 model and evaluates it (the "before" figures);
3. stage 1 (`configs/desa2va_text_pretrain_tiny.py`) then stage 2 (`configs/desa2va_tiny.py`, pointed at
   stage 1) through `tools/dist.sh` with one process;
4. exports the trained model (`tools/convert_to_hf.py`) and evaluates it with
   `projects/desa2va/evaluation/refcoco_eval.py` (synthetic RefCOCO-format val: cIoU, gIoU) and
   `ref_vos_eval.py` (synthetic MeViS-format valid_u: J&F);
5. writes `work_dirs/quickstart/summary.json` (`image_ciou`, `image_giou`, `video_jf`, `before: {...}`,
   fractions in [0, 1]) and prediction | ground-truth overlays (`overlay_*.png`, a video clip `.mp4`) next to it.

Paths are relative to `--workspace` (default: the repository). Options shorten it for smoke tests
(`--stage1-iters`, `--stage2-iters`, `--limit`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

STAGE1 = os.path.join(ROOT, "configs/desa2va_text_pretrain_tiny.py")
STAGE2 = os.path.join(ROOT, "configs/desa2va_tiny.py")


def log(msg: str) -> None:
    print(f"[quickstart] {msg}", flush=True)


def run(cmd, **kw) -> None:
    log("$ " + " ".join(cmd))
    rc = subprocess.call(cmd, **kw)  # in the workspace
    if rc != 0:
        raise SystemExit(f"[quickstart] failed (exit {rc}): {' '.join(cmd)}")


def prepare(out: str) -> None:
    import make_synthetic_data
    import make_tiny_pretrained

    make_tiny_pretrained.ensure_tiny("pretrained/tiny")  # the committed foundations (assets/foundations)
    if not os.path.isfile("data/synthetic/refcoco/instances.json"):
        make_synthetic_data.main(["--out", "data/synthetic"])
    os.makedirs(out, exist_ok=True)


def export_untrained(path: str) -> None:
    from convert_to_hf import build_model

    build_model(STAGE2).save_pretrained(path)


def evaluate(model: str, work: str, limit, vis: int = 0) -> dict:
    from projects.desa2va.evaluation import ref_vos_eval, refcoco_eval

    data = "data/synthetic"
    extra = ["--limit", str(limit)] if limit else []
    img = refcoco_eval.main(["--model_path", model, "--dataset", "refcoco", "--split", "val", "--data_root", data,
                             "--image_folder", os.path.join(data, "refcoco/images"),
                             "--work_dir", os.path.join(work, "refcoco_val"), "--vis", str(4 * vis)] + extra)
    vid = ref_vos_eval.main(["--model_path", model, "--dataset", "MEVIS_U",
                             "--data_root", os.path.join(data, "mevis/valid_u"),
                             "--work_dir", os.path.join(work, "mevis_valid_u"), "--vis", str(vis)] + extra)
    return {"image_ciou": round(img["ciou"] / 100, 4), "image_giou": round(img["giou"] / 100, 4),
            "video_jf": round(vid["J&F"] / 100, 4),
            # samples without a mask (no [SEG] in the answer: the untrained model's usual case)
            "image_failed": img["num_failed"], "video_failed": vid["num_failed"],
            "image_samples": img["num_samples"], "video_samples": vid["num_expressions"]}


def schedule_options(iters: int) -> list:
    """--cfg-options for a run of `iters` iterations that keeps the schedule's shape (warm-up, then cosine
    to 0 at the last iteration) and checkpoints once, at the end."""
    warm = min(30, max(iters // 10, 1))
    return [f"train_cfg.max_iters={iters}", f"param_scheduler.0.end={warm}", f"param_scheduler.1.begin={warm}",
            f"param_scheduler.1.end={iters}", f"default_hooks.checkpoint.interval={iters}"]


def train(config: str, work_dir: str, iters, *options) -> None:
    cfg = ["--cfg-options", "default_hooks.logger.interval=50"] + list(options)
    if iters:
        cfg += schedule_options(iters)
    run(["bash", os.path.join(ROOT, "tools/dist.sh"), "train", config, "1", "--work-dir", work_dir] + cfg,
        env=dict(os.environ, PORT=os.environ.get("PORT", "29507")))


def overlays(out: str, work: str) -> list:
    """The evaluation's `--vis` outputs (prediction | ground truth) copied next to the summary: four images
    (`overlay_image_*.png`) and one video (`overlay_video_*.png` strip and `.mp4` clip)."""
    import glob
    import shutil

    written = []
    for sub, prefix in (("refcoco_val", "overlay_image_"), ("mevis_valid_u", "overlay_video_")):
        for src in sorted(glob.glob(os.path.join(work, sub, "vis", "*"))):
            written.append(shutil.copyfile(src, os.path.join(out, prefix + os.path.basename(src))))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", default=ROOT, help="where pretrained/, data/ and work_dirs/ are")
    p.add_argument("--out", default="work_dirs/quickstart")
    p.add_argument("--stage1-iters", type=int, default=None, help="default: the stage-1 config's")
    p.add_argument("--stage2-iters", type=int, default=None, help="default: the stage-2 config's")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N sentences / videos only")
    a = p.parse_args(argv)
    os.chdir(a.workspace)
    out = a.out
    t0 = time.time()
    times = {}

    def stage(name, fn, *args):
        t = time.time()
        log(f"--- {name}")
        result = fn(*args)
        times[name] = round(time.time() - t, 1)
        log(f"--- {name}: {times[name]:.0f} s")
        return result

    stage("prepare", prepare, out)
    stage("export untrained", export_untrained, os.path.join(out, "untrained"))
    before = stage("evaluate untrained", evaluate, os.path.join(out, "untrained"), os.path.join(out, "eval_before"),
                   a.limit)
    stage("stage 1 (text pre-training)", train, STAGE1, os.path.join(out, "stage1"), a.stage1_iters)
    stage("stage 2 (DeSa2VA)", train, STAGE2, os.path.join(out, "stage2"), a.stage2_iters,
          f"model.stage1_checkpoint={os.path.join(out, 'stage1')}")
    stage("export", run, [sys.executable, os.path.join(ROOT, "tools/convert_to_hf.py"), STAGE2, os.path.join(out, "stage2"),
                          "--save-path", os.path.join(out, "model")])
    after = stage("evaluate trained", evaluate, os.path.join(out, "model"), os.path.join(out, "eval_after"), a.limit, 1)
    pngs = stage("overlays", overlays, out, os.path.join(out, "eval_after"))
    summary = {**after, "before": before, "wall_time_s": round(time.time() - t0, 1), "stage_times_s": times,
               "model": os.path.join(out, "model"), "overlays": [os.path.basename(x) for x in pngs]}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print()
    print(f"{'':14}{'untrained':>11}{'trained':>10}")
    for key, name in (("image_ciou", "image cIoU"), ("image_giou", "image gIoU"), ("video_jf", "video J&F")):
        ratio = after[key] / before[key] if before[key] > 0 else float("inf")
        print(f"{name:14}{before[key]:>11.3f}{after[key]:>10.3f}   x{ratio:.1f}")
    print(f"{'no mask':14}{before['image_failed'] + before['video_failed']:>11}"
          f"{after['image_failed'] + after['video_failed']:>10}   of {after['image_samples'] + after['video_samples']}")
    print(f"\n[quickstart] {summary['wall_time_s'] / 60:.1f} min; summary: {os.path.join(out, 'summary.json')}; "
          f"trained model: {summary['model']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
