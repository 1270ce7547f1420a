"""What each DeSa2VA component is worth on the CPU proxy (the tiny foundations + the synthetic benchmark), at
an equal training budget per arm, over seeds, with paired differences to full DeSa2VA.

    python benchmarks/ablation.py                        # the recorded run (CPU, see RESULTS.md; resumable)
    python benchmarks/ablation.py --seeds 0 --variants sa2va desa2va --stage2-iters 50   # a quick look

Every trained variant runs stage 2 (`configs/desa2va_tiny.py`) for `--stage2-iters` iterations with the
same data, batch and schedule, changing one switch (`--cfg-options`); the variants that use text
pre-training start from the stage-1 run (`configs/desa2va_text_pretrain_tiny.py`, its own schedule unless
`--stage1-iters`) of the same seed. Inference-only variants evaluate a trained variant's model of the same
seed with overridden settings (`--override` of the evaluation scripts). Each model is exported and
evaluated with the evaluation scripts: image cIoU / gIoU on the synthetic RefCOCO-format val split (first
`--image-limit` sentences) and video J&F on the synthetic MeViS-format valid_u split (first
`--video-limit` videos, 0: all). The trivial baseline (every shape of the image or frame as the mask) is
computed on the same sentences and videos.

Variants (METHOD.md section 4 and 3.4; the real configs' settings are the full model, including its
inference: 5 uniform key frames propagated by SAM-2's memory, one reprompt refinement):
  sa2va                 decouple off: one projection, one decoder, BCE + Dice, Sa2VA's inference (the control arm)
  desa2va               full DeSa2VA: stage 1, gate fusion, w_t = w_v = 0.5, w_f = 1, align 2.0 (tiny), orth 0.1
  no_text_pretrain      D_txt initialised from SAM-2's decoder instead of stage 1 (no alignment term)
  fusion_<mode>         fusion = pixel_gate | mean | text_only | visual_only
  fused_loss_only       w_t = w_v = 0: the fused mask alone supervised (no triple supervision)
  align_weight_0, orth_weight_0   without the real-text alignment / the decoupling regulariser
  train_with_memory     the later frames of video samples tracked through SAM-2's memory and supervised
  reprompt_iters_0      (inference) DeSa2VA without reprompt refinement
  keyframes_first_5     (inference) DeSa2VA with Sa2VA's key frames (the first 5)
  num_keyframes_2       (inference) DeSa2VA with 2 uniform key frames (6 of 8 frames propagated)
  sa2va_desa2va_inference (inference) the Sa2VA model with DeSa2VA's inference (uniform key frames, reprompt)
`sa2va`, `desa2va` and `no_text_pretrain` run on every seed of `--seeds`, the rest on the first
`--few-seeds` of them (an inference variant on the seeds of the model it evaluates).

Per job (variant, seed) one process trains, exports and evaluates; its `result.json` in
`<work-dir>/<variant>/seed<k>/` makes a re-run skip it (`--fresh` redoes everything), so a cut-short run
resumes where it stopped; a result made with other settings (budget, options, evaluation set) stops the run
instead of entering the table. Writes `<out>/ablation.json` (per-seed values, mean, std, paired differences,
times) and, unless --no-record, the table into benchmarks/RESULTS.md (the block between the ablation
markers) and a row of its log. Paths: `pretrained/tiny` and `data/synthetic` under `--workspace` (the
foundations are installed there when missing).
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
    "sa2va": ("Sa2VA baseline (decouple off)", False, {"model.decouple": False, "model.align_weight": None}),
    "desa2va": ("DeSa2VA, full", True, {}),
    "no_text_pretrain": ("no text pre-training (D_txt from SAM-2)", False, {"model.align_weight": 0.0}),
    "fusion_pixel_gate": ("fusion = pixel_gate", True, {"model.fusion": "pixel_gate"}),
    "fusion_mean": ("fusion = mean", True, {"model.fusion": "mean"}),
    "fusion_text_only": ("fusion = text_only", True, {"model.fusion": "text_only"}),
    "fusion_visual_only": ("fusion = visual_only", True, {"model.fusion": "visual_only"}),
    "fused_loss_only": ("w_t = w_v = 0 (no triple supervision)", True,
                        {"model.text_weight": 0.0, "model.visual_weight": 0.0}),
    "align_weight_0": ("align_weight = 0", True, {"model.align_weight": 0.0}),
    "orth_weight_0": ("orth_weight = 0", True, {"model.orth_weight": 0.0}),
    "train_with_memory": ("train_with_memory (3.4)", True, {"model.train_with_memory": True}),
}
MAIN = ("sa2va", "desa2va", "no_text_pretrain")  # on every seed; the rest on the first --few-seeds
# name -> (what it is, the trained variant it evaluates, evaluation overrides, evaluations)
INFERENCE: Dict[str, tuple] = {
    "reprompt_iters_0": ("reprompt_iters = 0 (full model)", "desa2va", {"reprompt_iters": 0}, ("image", "video")),
    "keyframes_first_5": ("key frames: the first 5 (full model)", "desa2va", {"keyframes": "first"}, ("video",)),
    "num_keyframes_2": ("2 uniform key frames (full model)", "desa2va", {"num_keyframes": 2}, ("video",)),
    "sa2va_desa2va_inference": ("Sa2VA model, DeSa2VA's inference", "sa2va",
                                {"reprompt_iters": 1, "keyframes": "uniform"}, ("image", "video")),
}
VARIANTS = list(TRAINED) + list(INFERENCE)


def log(msg: str) -> None:
    print(f"[ablation] {msg}", flush=True)


def _cli_options(opts: Dict[str, Any]) -> List[str]:
    return [f"{k}={v}" for k, v in opts.items()]


def job_dir(work: str, name: str, seed: int) -> str:
    return os.path.join(work, name, f"seed{seed}")


# ---------------------------------------------------------------------------------------------- one job
def run_stage1(work: str, seed: int, iters: int) -> None:
    import quickstart
    import train

    opts = (quickstart.schedule_options(iters) if iters else []) + [f"randomness.seed={seed}",
                                                                   "default_hooks.logger.interval=100"]
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
    cli += list(a.train_options or [])
    if train.main([STAGE2, "--work-dir", os.path.join(d, "train"), "--cfg-options"] + cli + _cli_options(model_opts)):
        raise SystemExit(f"{name} seed {seed}: training failed")
    train_s = time.time() - t
    model = convert_to_hf.load_trained_model(STAGE2, os.path.join(d, "train"), opts)
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


def trivial_baseline(workspace: str, image_limit: int, video_limit: int) -> Dict[str, float]:
    """The evaluation's sentences and videos answered with every shape of the image (frame) as the mask:
    image cIoU / gIoU (the first `image_limit` val sentences, in the evaluation's order) and video J&F (the
    first `video_limit` valid_u videos by name, 0: all; `metrics.j_and_f`), read from the annotation files:
    the level a model that ignores the expression reaches (CALIBRATION.md's "all shapes" baseline)."""
    import numpy as np

    from projects.desa2va.common.masks import decode_segmentation
    from projects.desa2va.datasets.mevis_revos import read_mask_file
    from projects.desa2va.datasets.refcoco import RefCOCODataset
    from projects.desa2va.evaluation.metrics import ciou_giou, j_and_f

    data = os.path.join(workspace, "data/synthetic")
    ds = RefCOCODataset(data_root=os.path.join(data, "refcoco"), image_folder=os.path.join(data, "refcoco/images"),
                        split="val", mode="eval", model_path=os.path.join(workspace, "pretrained/tiny/InternVL2_5-tiny"),
                        on_bad_sample="raise")
    with open(os.path.join(data, "refcoco/instances.json")) as f:
        coco = json.load(f)
    size = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
    anns: Dict[int, list] = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a["segmentation"])
    refs = ds.references()[:image_limit]
    image = ciou_giou([np.any([decode_segmentation(seg, *size[r["image_id"]]) for seg in anns[r["image_id"]]], 0)
                       for r in refs], [ds.ground_truth(i) for i in range(len(refs))])
    root = os.path.join(data, "mevis/valid_u")
    with open(os.path.join(root, "meta_expressions.json")) as f:
        videos = json.load(f)["videos"]
    rles = read_mask_file(os.path.join(root, "mask_dict.json"))

    def frames_of(anno_ids):
        return np.any([[decode_segmentation(m, *m["size"]) for m in rles[str(a)]] for a in anno_ids], 0)
    jf = []
    for vid in sorted(videos)[:video_limit or None]:
        exps = videos[vid]["expressions"].values()
        every = frames_of(sorted({a for e in exps for a in e["anno_id"]}))
        for e in exps:
            j, f = j_and_f(list(every), list(frames_of(e["anno_id"])))
            jf.append((j + f) / 2)
    return {"image_ciou": round(image["ciou"], 4), "image_giou": round(image["giou"], 4),
            "video_jf": round(float(np.mean(jf)), 4), "image_samples": len(refs), "video_samples": len(jf)}


def run_job(a) -> None:
    """The worker: one (variant, seed), in its own process; writes result.json."""
    os.chdir(a.workspace)
    seed, name = a.seed, a.job
    d = job_dir(a.work_dir, name, seed)
    os.makedirs(d, exist_ok=True)
    t = time.time()
    if name == "stage1":
        run_stage1(a.work_dir, seed, a.stage1_iters)
        res: Dict[str, Any] = {}
    elif name in TRAINED:
        res = run_trained(a.work_dir, name, seed, a.stage2_iters, a)
    else:
        _, base, overrides, which = INFERENCE[name]
        res = evaluate(os.path.join(job_dir(a.work_dir, base, seed), "model"), d, overrides, which, a)
    res.update(variant=name, seed=seed, wall_s=round(time.time() - t, 1), settings=job_settings(name, a))
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(res, f, indent=2)


# ---------------------------------------------------------------------------------------------- driver
def prepare(workspace: str) -> None:
    import make_synthetic_data
    import make_tiny_pretrained

    make_tiny_pretrained.ensure_tiny(os.path.join(workspace, "pretrained/tiny"))
    if not os.path.isfile(os.path.join(workspace, "data/synthetic/refcoco/instances.json")):
        make_synthetic_data.main(["--out", os.path.join(workspace, "data/synthetic")])


def job_settings(name: str, a) -> Dict[str, Any]:
    """What a job's result depends on besides its variant and seed: a finished job is reused only when these
    match (a result of another budget or evaluation set must not enter the table)."""
    if name == "stage1":
        return {"stage1_iters": a.stage1_iters}
    return {"stage1_iters": a.stage1_iters, "stage2_iters": a.stage2_iters,
            "train_options": list(a.train_options or []), "image_limit": a.image_limit, "video_limit": a.video_limit}


def spawn(name: str, seed: int, a) -> Dict[str, Any]:
    d = job_dir(a.work_dir_abs, name, seed)
    done = os.path.join(d, "result.json")
    if os.path.isfile(done) and not a.fresh:
        with open(done) as f:
            res = json.load(f)
        if res.get("settings") != job_settings(name, a):
            raise SystemExit(f"[ablation] {done} was made with other settings ({res.get('settings')}, this run: "
                             f"{job_settings(name, a)}): use --fresh to redo it, or another --work-dir")
        return res
    os.makedirs(d, exist_ok=True)
    cmd = [sys.executable, os.path.abspath(__file__), "--job", name, "--seed", str(seed),
           "--workspace", a.workspace, "--work-dir", a.work_dir_abs, "--stage1-iters", str(a.stage1_iters),
           "--stage2-iters", str(a.stage2_iters), "--image-limit", str(a.image_limit),
           "--video-limit", str(a.video_limit)]
    if a.train_options:
        cmd += ["--train-options"] + list(a.train_options)
    with open(os.path.join(d, "log.txt"), "w") as logf:
        rc = subprocess.call(cmd, stdout=logf, stderr=subprocess.STDOUT,
                             env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    if rc != 0 or not os.path.isfile(done):
        raise SystemExit(f"[ablation] {name} seed {seed} failed (exit {rc}); log: {os.path.join(d, 'log.txt')}")
    with open(done) as f:
        return json.load(f)


# two-sided 95% quantiles of Student's t for 1..10 degrees of freedom
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def mean_std(values: List[float]) -> Dict[str, Optional[float]]:
    import numpy as np

    if not values:
        return {"mean": None, "std": None}
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4)}


def paired_difference(values: Dict[int, float], reference: Dict[int, float]) -> Optional[Dict[str, Any]]:
    """Mean of the per-seed differences values[s] - reference[s] over their common seeds, with the 95%
    interval of Student's t (n - 1 degrees of freedom); None with fewer than 2 common seeds."""
    import numpy as np

    seeds = sorted(set(values) & set(reference))
    if len(seeds) < 2:
        return None
    d = np.array([values[s] - reference[s] for s in seeds])
    half = T975[len(d) - 2] * d.std(ddof=1) / np.sqrt(len(d))
    return {"mean": round(float(d.mean()), 4), "low": round(float(d.mean() - half), 4),
            "high": round(float(d.mean() + half), 4), "seeds": seeds}


METRICS = ("image_ciou", "image_giou", "video_jf")


def aggregate(results: Dict[str, List[Dict[str, Any]]], reference: str = "desa2va") -> Dict[str, Dict[str, Any]]:
    table = {}
    ref = {k: {r["seed"]: r[k] for r in results.get(reference, []) if k in r} for k in METRICS}
    for name, runs in results.items():
        row: Dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
        for key in METRICS:
            vals = {r["seed"]: r[key] for r in runs if key in r}
            if vals:
                row[key] = dict(mean_std(list(vals.values())), values=list(vals.values()))
                if name != reference:
                    row[key]["diff"] = paired_difference(vals, ref[key])
        table[name] = row
    return table


def _fmt(cell: Optional[Dict[str, Any]]) -> str:
    return "-" if not cell else f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def _fmt_diff(cell: Optional[Dict[str, Any]]) -> str:
    d = (cell or {}).get("diff")
    return "-" if not d else f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def markdown_table(table: Dict[str, Dict[str, Any]], settings: Dict[str, Any]) -> str:
    desc = {**{k: v[0] for k, v in TRAINED.items()}, **{k: v[0] for k, v in INFERENCE.items()}}
    lines = ["| variant | what | image cIoU | vs DeSa2VA | image gIoU | video J&F | vs DeSa2VA | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | {desc[name]} | {_fmt(row.get('image_ciou'))} | {_fmt_diff(row.get('image_ciou'))} | "
                     f"{_fmt(row.get('image_giou'))} | {_fmt(row.get('video_jf'))} | {_fmt_diff(row.get('video_jf'))} | "
                     f"{len(row['seeds'])} |")
    s, b = settings, settings["trivial"]
    lines.append(f"| all shapes | every shape of the image / frame as the mask (no model) | {b['image_ciou']:.3f} | | "
                 f"{b['image_giou']:.3f} | {b['video_jf']:.3f} | | |")
    stage1 = (f"{s['stage1_iters']} iterations" if s["stage1_iters"]
              else "at configs/desa2va_text_pretrain_tiny.py's schedule")
    lines += ["", f"Mean ± standard deviation over seeds; \"vs DeSa2VA\": the mean per-seed difference to full "
              f"DeSa2VA with its 95% interval (Student's t over the common seeds). Seeds {s['seeds']} for "
              f"{', '.join(MAIN)}, the first {s['few_seeds']} for the rest. Stage 1 {stage1} (one run per seed, "
              f"shared), stage 2 {s['stage2_iters']} iterations per run (configs/desa2va_tiny.py otherwise), "
              f"batch 8; image: first {s['image_limit']} val sentences, video: "
              f"{'all' if not s['video_limit'] else s['video_limit']} valid_u videos. {s['wall_min']:.0f} min of "
              f"jobs on {s['machine']}, commit {s['commit']}, {s['date']}.",
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


def jobs_of(variants: List[str], seeds: List[int], few: int) -> List[tuple]:
    """(variant, seed) in run order, seed-major (a cut-short run has every variant of its first seeds): the
    main variants on every seed, the others on the first `few`; an inference variant where its model is."""
    trained = [v for v in variants if v in TRAINED]
    for v in variants:  # inference variants need the model they evaluate
        if v in INFERENCE and INFERENCE[v][1] not in trained:
            trained.append(INFERENCE[v][1])
    wanted = [v for v in VARIANTS if v in trained or v in variants]

    def on(v, i):
        base = INFERENCE[v][1] if v in INFERENCE else v
        return base in MAIN or i < few
    return [(v, s) for i, s in enumerate(seeds) for v in wanted if on(v, i)]


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--few-seeds", type=int, default=3, help="how many of the seeds the non-main variants run")
    p.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    p.add_argument("--stage1-iters", type=int, default=0, help="stage-1 iterations (0: the config's schedule)")
    p.add_argument("--stage2-iters", type=int, default=800,
                   help="stage-2 iterations per arm (800: configs/desa2va_tiny.py's schedule, the quickstart's "
                        "model; the whole run takes ~3 h of 2 CPU cores)")
    p.add_argument("--train-options", nargs="+", default=None, metavar="KEY=VALUE",
                   help="more stage-2 --cfg-options for every variant (e.g. train_dataloader.batch_size=4)")
    p.add_argument("--image-limit", type=int, default=300, help="first N val sentences")
    p.add_argument("--video-limit", type=int, default=0, help="first N valid_u videos (0: all)")
    p.add_argument("--workspace", default=common.ROOT, help="where pretrained/tiny and data/synthetic are")
    p.add_argument("--work-dir", default="work_dirs/ablation", help="relative to the workspace")
    p.add_argument("--fresh", action="store_true", help="redo jobs that have a result.json")
    p.add_argument("--out", default=common.RESULTS_DIR)
    p.add_argument("--no-record", action="store_true", help="do not write to RESULTS.md")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.workspace = os.path.abspath(a.workspace)
    if a.stage2_iters < 2 or a.stage1_iters == 1:
        p.error("--stage2-iters is at least 2, --stage1-iters 0 (the config's) or at least 2 (warm-up, then cosine)")
    if a.job:
        run_job(a)
        return {}
    a.work_dir_abs = os.path.join(a.workspace, a.work_dir)
    prepare(a.workspace)
    jobs = jobs_of(a.variants, a.seeds, a.few_seeds)
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {v: [] for v in dict.fromkeys(v for v, _ in jobs)}
    stage1_done = set()
    job_s = 0.0
    for v, seed in jobs:
        if (v in TRAINED and TRAINED[v][1]) and seed not in stage1_done:
            r = spawn("stage1", seed, a)
            stage1_done.add(seed)
            job_s += r["wall_s"]
            log(f"seed {seed} stage 1: {r['wall_s']:.0f} s")
        r = spawn(v, seed, a)
        results[v].append(r)
        job_s += r["wall_s"]
        shown = ", ".join(f"{k} {r[k]:.3f}" for k in ("image_ciou", "video_jf") if k in r)
        log(f"seed {seed} {v}: {shown} ({r['wall_s']:.0f} s; {job_s / 60:.1f} min of jobs, "
            f"{(time.time() - t0) / 60:.1f} min this call)")
    table = aggregate(results)
    cmd = " ".join(["python benchmarks/ablation.py"] + list(sys.argv[1:] if argv is None else argv))
    settings = {"seeds": a.seeds, "few_seeds": a.few_seeds, "stage1_iters": a.stage1_iters,
                "stage2_iters": a.stage2_iters, "image_limit": a.image_limit, "video_limit": a.video_limit,
                "wall_min": job_s / 60, "machine": common.machine(), "commit": common.commit(),
                "date": time.strftime("%Y-%m-%d"), "command": cmd,
                "trivial": trivial_baseline(a.workspace, a.image_limit, a.video_limit)}
    text = markdown_table(table, settings)
    print("\n" + text + "\n")
    result = {"settings": settings, "table": table, "runs": results, "wall_s": round(job_s, 1)}
    full = table.get("desa2va", {}).get("image_ciou"), table.get("sa2va", {}).get("image_ciou")
    summary = f"{len(a.seeds)} seeds, {len(jobs)} jobs, stage 2 {a.stage2_iters} iters, {job_s / 60:.0f} min of jobs"
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
