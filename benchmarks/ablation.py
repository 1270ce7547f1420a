"""What each DeSa2VA component is worth on the synthetic benchmark, at an equal training budget, 3 seeds.

    python benchmarks/ablation.py                        # the recorded run (CPU, see RESULTS.md)
    python benchmarks/ablation.py --seeds 0 --variants sa2va desa2va --stage2-iters 50   # a quick look

Every trained variant runs stage 2 (`configs/desa2va_tiny.py`) for `--stage2-iters` iterations with the
same data, batch and schedule, changing one switch (`--cfg-options`); the variants that use text
pre-training start from a stage-1 run (`configs/desa2va_text_pretrain_tiny.py`, `--stage1-iters`) of the
same seed. Inference-only variants evaluate the full model of the same seed with overridden settings
(`--override` of the evaluation scripts). Each model is exported and evaluated with the evaluation scripts:
image cIoU on the synthetic RefCOCO-format val split (first `--image-limit` sentences) and video J&F on
the synthetic MeViS-format valid_u split (`--video-limit` videos, default all).

The budget is set to fit 90 minutes of 2 CPU cores (27 trained runs + 3 stage-1 runs): the tiny SAM-2 runs at
128 px (`--sam-size`; its weights do not depend on the size), stage 1 gets 800 iterations at lr 1e-3 (the
tiny stage-1 loss breaks through at ~500, see RESULTS.md) and stage 2 250 iterations at the config's lr.
At that stage-2 budget the tiny models are early in training: the table compares what each variant has
learned by then, not converged quality.

Variants (the tiny config's own settings are the full model: reprompt_iters=0 and every frame a key frame,
see configs/desa2va_tiny.py, so the inference switches are measured against them):
  sa2va               decouple off: one projection, one decoder, BCE + Dice (the control arm)
  desa2va             full DeSa2VA: stage 1, gate fusion, align 0.5, orth 0.1
  no_text_pretrain    D_txt initialised from SAM-2's decoder instead of stage 1
  fusion_<mode>       fusion = pixel_gate | mean | text_only | visual_only
  align_weight_0      no real-text alignment term
  orth_weight_0       no decoupling regulariser
  reprompt_iters_1    one reprompt refinement at inference (default of the real configs)
  keyframes_first_2, keyframes_uniform_2   2 key frames per 8-frame clip, the rest propagated by SAM-2

Per job (variant, seed) one process trains, exports and evaluates; its `result.json` in
`<work-dir>/<variant>/seed<k>/` makes a re-run skip it (`--fresh` redoes everything). Writes
`<out>/ablation.json` (per-seed values, mean, std, times) and, unless --no-record, the table into
benchmarks/RESULTS.md (the block between the ablation markers) and a row of its log.
Paths: `pretrained/tiny` and `data/synthetic` under `--workspace` (written when missing).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

STAGE1 = os.path.join(common.ROOT, "configs", "desa2va_text_pretrain_tiny.py")
STAGE2 = os.path.join(common.ROOT, "configs", "desa2va_tiny.py")

# name -> (what it is, starts from stage 1, stage-2 --cfg-options)
TRAINED: Dict[str, tuple] = {
    "sa2va": ("Sa2VA baseline (decouple off)", False, {"model.decouple": False}),
    "desa2va": ("DeSa2VA, full", True, {}),
    "no_text_pretrain": ("no text pre-training (D_txt from SAM-2)", False, {}),
    "fusion_pixel_gate": ("fusion = pixel_gate", True, {"model.fusion": "pixel_gate"}),
    "fusion_mean": ("fusion = mean", True, {"model.fusion": "mean"}),
    "fusion_text_only": ("fusion = text_only", True, {"model.fusion": "text_only"}),
    "fusion_visual_only": ("fusion = visual_only", True, {"model.fusion": "visual_only"}),
    "align_weight_0": ("align_weight = 0", True, {"model.align_weight": 0.0}),
    "orth_weight_0": ("orth_weight = 0", True, {"model.orth_weight": 0.0}),
}
# name -> (what it is, the trained variant it evaluates, evaluation overrides, evaluations)
INFERENCE: Dict[str, tuple] = {
    "reprompt_iters_1": ("reprompt_iters = 1 (full model)", "desa2va", {"reprompt_iters": 1}, ("image", "video")),
    "keyframes_first_2": ("2 key frames, first (full model)", "desa2va", {"keyframes": "first", "num_keyframes": 2},
                          ("video",)),
    "keyframes_uniform_2": ("2 key frames, uniform (full model)", "desa2va",
                            {"keyframes": "uniform", "num_keyframes": 2}, ("video",)),
}
VARIANTS = list(TRAINED) + list(INFERENCE)


def log(msg: str) -> None:
    print(f"[ablation] {msg}", flush=True)


def _cli_options(opts: Dict[str, Any]) -> List[str]:
    return [f"{k}={v}" for k, v in opts.items()]


def job_dir(work: str, name: str, seed: int) -> str:
    return os.path.join(work, name, f"seed{seed}")


# ---------------------------------------------------------------------------------------------- one job
def sam_size_options(size: int, stage: int) -> List[str]:
    """Run the tiny SAM-2 at `size` px (0: the configs' 256): the model and every dataset of the stage."""
    if not size:
        return []
    return [f"model.grounding.image_size={size}", f"train_dataloader.dataset.common.sam_size={size}"]


def run_stage1(work: str, seed: int, iters: int, a) -> None:
    import quickstart
    import train

    opts = quickstart.schedule_options(iters) + [f"randomness.seed={seed}", "default_hooks.logger.interval=50"]
    opts += sam_size_options(a.sam_size, 1) + ([f"optim_wrapper.optimizer.lr={a.stage1_lr}"] if a.stage1_lr else [])
    if train.main([STAGE1, "--work-dir", os.path.join(work, "stage1", f"seed{seed}"), "--cfg-options"] + opts):
        raise SystemExit("stage 1 failed")


def run_trained(work: str, name: str, seed: int, iters: int, a) -> Dict[str, Any]:
    import convert_to_hf
    import quickstart
    import train

    _, uses_stage1, opts = TRAINED[name]
    d = job_dir(work, name, seed)
    stage1 = os.path.join(work, "stage1", f"seed{seed}") if uses_stage1 else None
    model_opts = dict(opts, **{"model.stage1_checkpoint": stage1})
    t = time.time()
    cli = quickstart.schedule_options(iters) + [f"randomness.seed={seed}", "default_hooks.logger.interval=50"]
    if a.lr:
        cli.append(f"optim_wrapper.optimizer.lr={a.lr}")
    cli += sam_size_options(a.sam_size, 2) + list(a.train_options or [])
    if train.main([STAGE2, "--work-dir", os.path.join(d, "train"), "--cfg-options"] + cli + _cli_options(model_opts)):
        raise SystemExit(f"{name} seed {seed}: training failed")
    train_s = time.time() - t
    build_opts = dict(opts, **({"model.grounding.image_size": a.sam_size} if a.sam_size else {}))
    model = convert_to_hf.load_trained_model(STAGE2, os.path.join(d, "train"), build_opts)
    model.save_pretrained(os.path.join(d, "model"))
    del model
    shutil.rmtree(os.path.join(d, "train"), ignore_errors=True)  # checkpoints: the exported model is kept
    res = evaluate(os.path.join(d, "model"), d, {}, ("image", "video"), a)
    return dict(res, train_s=round(train_s, 1))


def evaluate(model: str, d: str, overrides: Dict[str, Any], which, a) -> Dict[str, Any]:
    from projects.desa2va.evaluation import ref_vos_eval, refcoco_eval

    data = "data/synthetic"
    over = ["--override"] + _cli_options(overrides) if overrides else []
    out: Dict[str, Any] = {}
    t = time.time()
    if "image" in which:
        img = refcoco_eval.main(["--model_path", model, "--dataset", "refcoco", "--split", "val", "--data_root", data,
                                 "--image_folder", os.path.join(data, "refcoco/images"),
                                 "--work_dir", os.path.join(d, "eval_image"), "--limit", str(a.image_limit)] + over)
        out.update(image_ciou=round(img["ciou"] / 100, 4), image_giou=round(img["giou"] / 100, 4),
                   image_samples=img["num_samples"], image_failed=img["num_failed"])
    if "video" in which:
        lim = ["--limit", str(a.video_limit)] if a.video_limit else []
        vid = ref_vos_eval.main(["--model_path", model, "--dataset", "MEVIS_U",
                                 "--data_root", os.path.join(data, "mevis/valid_u"),
                                 "--work_dir", os.path.join(d, "eval_video")] + lim + over)
        out.update(video_jf=round(vid["J&F"] / 100, 4), video_samples=vid["num_expressions"],
                   video_failed=vid["num_failed"])
    out["eval_s"] = round(time.time() - t, 1)
    return out


def run_job(a) -> None:
    """The worker: one (variant, seed), in its own process; writes result.json."""
    os.chdir(a.workspace)
    seed, name = a.seed, a.job
    d = job_dir(a.work_dir, name, seed)
    os.makedirs(d, exist_ok=True)
    t = time.time()
    if name == "stage1":
        run_stage1(a.work_dir, seed, a.stage1_iters, a)
        res: Dict[str, Any] = {}
    elif name in TRAINED:
        res = run_trained(a.work_dir, name, seed, a.stage2_iters, a)
    else:
        _, base, overrides, which = INFERENCE[name]
        res = evaluate(os.path.join(job_dir(a.work_dir, base, seed), "model"), d, overrides, which, a)
    res.update(variant=name, seed=seed, wall_s=round(time.time() - t, 1))
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(res, f, indent=2)


# ---------------------------------------------------------------------------------------------- driver
def prepare(workspace: str) -> None:
    import make_synthetic_data
    import make_tiny_pretrained

    if not os.path.isfile(os.path.join(workspace, "pretrained/tiny/sam2_tiny.pt")):
        make_tiny_pretrained.main(["--out", os.path.join(workspace, "pretrained/tiny")])
    if not os.path.isfile(os.path.join(workspace, "data/synthetic/refcoco/instances.json")):
        make_synthetic_data.main(["--out", os.path.join(workspace, "data/synthetic")])


def spawn(name: str, seed: int, a) -> Dict[str, Any]:
    d = job_dir(a.work_dir_abs, name, seed)
    done = os.path.join(d, "result.json")
    if os.path.isfile(done) and not a.fresh:
        with open(done) as f:
            return json.load(f)
    os.makedirs(d, exist_ok=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--job", name, "--seed", str(seed),
           "--workspace", a.workspace, "--work-dir", a.work_dir_abs, "--stage1-iters", str(a.stage1_iters),
           "--stage2-iters", str(a.stage2_iters), "--image-limit", str(a.image_limit),
           "--video-limit", str(a.video_limit), "--sam-size", str(a.sam_size)]
    if a.lr:
        cmd += ["--lr", str(a.lr)]
    if a.stage1_lr:
        cmd += ["--stage1-lr", str(a.stage1_lr)]
    if a.train_options:
        cmd += ["--train-options"] + list(a.train_options)
    with open(os.path.join(d, "log.txt"), "w") as logf:
        rc = subprocess.call(cmd, stdout=logf, stderr=subprocess.STDOUT,
                             env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    if rc != 0 or not os.path.isfile(done):
        raise SystemExit(f"[ablation] {name} seed {seed} failed (exit {rc}); log: {os.path.join(d, 'log.txt')}")
    with open(done) as f:
        return json.load(f)


def mean_std(values: List[float]) -> Dict[str, Optional[float]]:
    import numpy as np

    if not values:
        return {"mean": None, "std": None}
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}


def aggregate(results: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    table = {}
    for name, runs in results.items():
        row = {"seeds": [r["seed"] for r in runs]}
        for key in ("image_ciou", "image_giou", "video_jf"):
            vals = [r[key] for r in runs if key in r]
            if vals:
                row[key] = dict(mean_std(vals), values=vals)
        table[name] = row
    return table


def _fmt(cell: Optional[Dict[str, Any]]) -> str:
    return "-" if not cell else f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def markdown_table(table: Dict[str, Dict[str, Any]], settings: Dict[str, Any]) -> str:
    desc = {**{k: v[0] for k, v in TRAINED.items()}, **{k: v[0] for k, v in INFERENCE.items()}}
    lines = ["| variant | what | image cIoU | image gIoU | video J&F | seeds |", "|---|---|---|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | {desc[name]} | {_fmt(row.get('image_ciou'))} | {_fmt(row.get('image_giou'))} | "
                     f"{_fmt(row.get('video_jf'))} | {len(row['seeds'])} |")
    s = settings
    size = f"SAM-2 at {s['sam_size']} px" if s.get("sam_size") else "SAM-2 at the configs' 256 px"
    lr2 = f"lr {s['lr']:g}" if s.get("lr") else "the config's lr"
    lr1 = f"lr {s['stage1_lr']:g}" if s.get("stage1_lr") else "the config's lr"
    lines += ["", f"Mean ± standard deviation over seeds {s['seeds']}; stage 1 {s['stage1_iters']} iterations "
              f"({lr1}, one run per seed shared by the variants that use it) and stage 2 {s['stage2_iters']} "
              f"iterations ({lr2}) per run, batch 8, {size}; image: first {s['image_limit']} val sentences, "
              f"video: {'all' if not s['video_limit'] else s['video_limit']} valid_u videos. "
              f"{s['wall_min']:.0f} min on {s['machine']}, commit {s['commit']}, {s['date']}.",
              "", "Reproduce: `" + s["command"] + "`"]
    return "\n".join(lines)


def record_table(text: str) -> None:
    start, end = "<!-- ablation:start -->", "<!-- ablation:end -->"
    with open(common.RESULTS_MD) as f:
        md = f.read()
    block = f"{start}\n{text}\n{end}"
    if start in md and end in md:
        md = md[:md.index(start)] + block + md[md.index(end) + len(end):]
    else:
        md = md.rstrip("\n") + "\n\n" + block + "\n"
    with open(common.RESULTS_MD, "w") as f:
        f.write(md)


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--stage1-iters", type=int, default=800)
    p.add_argument("--stage1-lr", type=float, default=1e-3, help="stage-1 peak learning rate (0: the config's)")
    p.add_argument("--stage2-iters", type=int, default=250)
    p.add_argument("--lr", type=float, default=None, help="stage-2 peak learning rate (default: the config's)")
    p.add_argument("--train-options", nargs="+", default=None, metavar="KEY=VALUE",
                   help="more stage-2 --cfg-options for every variant (e.g. train_dataloader.batch_size=4)")
    p.add_argument("--sam-size", type=int, default=128,
                   help="tiny SAM-2 input size in px for every variant (0: the configs' 256)")
    p.add_argument("--image-limit", type=int, default=200, help="first N val sentences")
    p.add_argument("--video-limit", type=int, default=10, help="first N valid_u videos (0: all)")
    p.add_argument("--workspace", default=common.ROOT, help="where pretrained/tiny and data/synthetic are")
    p.add_argument("--work-dir", default="work_dirs/ablation", help="relative to the workspace")
    p.add_argument("--fresh", action="store_true", help="redo jobs that have a result.json")
    p.add_argument("--out", default=common.RESULTS_DIR)
    p.add_argument("--no-record", action="store_true", help="do not write to RESULTS.md")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.workspace = os.path.abspath(a.workspace)
    if min(a.stage1_iters, a.stage2_iters) < 2:
        p.error("--stage1-iters and --stage2-iters are at least 2 (warm-up, then cosine)")
    if a.job:
        run_job(a)
        return {}
    a.work_dir_abs = os.path.join(a.workspace, a.work_dir)
    prepare(a.workspace)
    trained = [v for v in a.variants if v in TRAINED]
    for v in a.variants:  # inference variants need the model they evaluate
        if v in INFERENCE and INFERENCE[v][1] not in trained:
            trained.append(INFERENCE[v][1])
    jobs = [v for v in VARIANTS if v in trained or v in a.variants]
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {v: [] for v in jobs}
    for seed in a.seeds:  # seed-major: a cut-short run still has every variant
        if any(TRAINED[v][1] for v in trained):
            r = spawn("stage1", seed, a)
            log(f"seed {seed} stage 1: {r['wall_s']:.0f} s")
        for v in jobs:
            r = spawn(v, seed, a)
            results[v].append(r)
            shown = ", ".join(f"{k} {r[k]:.3f}" for k in ("image_ciou", "video_jf") if k in r)
            log(f"seed {seed} {v}: {shown} ({r['wall_s']:.0f} s; {(time.time() - t0) / 60:.1f} min so far)")
    wall = time.time() - t0
    table = aggregate(results)
    cmd = " ".join(["python benchmarks/ablation.py"] + list(sys.argv[1:] if argv is None else argv))
    settings = {"seeds": a.seeds, "stage1_iters": a.stage1_iters, "stage2_iters": a.stage2_iters,
                "stage1_lr": a.stage1_lr, "lr": a.lr, "sam_size": a.sam_size,
                "image_limit": a.image_limit, "video_limit": a.video_limit, "wall_min": wall / 60,
                "machine": common.machine(), "commit": common.commit(),
                "date": time.strftime("%Y-%m-%d"), "command": cmd}
    text = markdown_table(table, settings)
    print("\n" + text + "\n")
    result = {"settings": settings, "table": table, "runs": results, "wall_s": round(wall, 1)}
    full = table.get("desa2va", {}).get("image_ciou"), table.get("sa2va", {}).get("image_ciou")
    summary = f"{len(a.seeds)} seeds x {len(jobs)} variants, stage 2 {a.stage2_iters} iters, {wall / 60:.0f} min"
    if all(full):
        summary += (f"; image cIoU DeSa2VA {_fmt(full[0])} vs Sa2VA {_fmt(full[1])}; video J&F DeSa2VA "
                    f"{_fmt(table['desa2va'].get('video_jf'))} vs Sa2VA {_fmt(table['sa2va'].get('video_jf'))} "
                    "(table above)")
    if not a.no_record:
        record_table(text)
    common.write_result("ablation", result, a.out, summary, not a.no_record, f"cpu, {common.machine()}")
    return result


if __name__ == "__main__":
    main()
