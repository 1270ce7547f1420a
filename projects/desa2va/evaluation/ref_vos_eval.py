"""Referring video object segmentation: J, F, J&F (DAVIS17, MeViS, Ref-YouTube-VOS, ReVOS, Ref-SAV).

    python projects/desa2va/evaluation/ref_vos_eval.py --model_path P --dataset DAVIS
    bash projects/desa2va/evaluation/dist_test.sh ref_vos_eval P 8 --dataset REVOS
    python projects/desa2va/evaluation/ref_vos_eval.py --model_path P --dataset MEVIS   # server zip

Per benchmark, the official protocol followed and how its ground truth is read (paths under `--data_root`,
each file overridable):
- DAVIS (DAVIS17 ref valid; Sa2VA's `tools/eval/eval_davis.py`): `meta_expressions/valid/meta_expressions
  .json` + `valid/mask_dict.pkl`, whose keys are a running counter over expressions, videos in sorted
  name order and each video's expression ids sorted as strings (`DAVIS17Dataset`); the expression file's
  own `obj_id` / `anno_id` are not the keys. J, F, J&F.
- MEVIS_U (MeViS valid_u; `tools/eval/eval_mevis.py`): `meta_expressions.json` + `mask_dict.json` keyed by
  each expression's `anno_id`s (the union of their masks). J, F, J&F.
- REVOS (ReVOS valid; ReVOS's and Sa2VA's `tools/eval/eval_revos.py`): `meta_expressions_valid_.json`
  (with `height`, `width`, `type_id` 0 referring / 1 reasoning / 2 no target) + `mask_dict.json` keyed by
  `anno_id`, + `mask_dict_foreground.json` ({video: {"masks_rle": [one RLE per frame]}}) for R. J, F, J&F,
  A (pixel accuracy) and R (robustness: false positives over that frame's foreground) per referring and
  reasoning, and `overall` = the mean of those two; no-target expressions are reported apart.
- MEVIS (MeViS valid) and REFYTVOS (Ref-YouTube-VOS valid): no public ground truth; scored by the
  servers from the submission: `Annotations/<video>/<exp_id>/<frame>.png` (0/255, original size, every
  frame the expression file lists, every expression) in `<work_dir>/submission.zip`.
- REFSAV (Ref-SAV; the release's annotation json + SA-V `_manual.json` masklets): every object asked
  with its long and with its short caption on every annotated frame; J, F, J&F per long / short / overall.
Every reader sorts a video's frames by name; mask lists are indexed by that order.

Videos are sharded over ranks; each video's frames are decoded once and all its expressions answered in
one `predict_video` call. Before the model loads, the ground truth is audited: expressions whose ground
truth is empty on every frame (outside ReVOS type 2) or whose keys are absent from the mask file are
named in a warning and counted in metrics.json (`num_empty_gt`, `empty_gt`, `num_absent_gt`, `absent_gt`);
when that holds for every expression the script stops, naming the mask file and the keys tried.

Outputs in `--work_dir`: `results.jsonl`, one line per (video, expression) in sorted order: `key`, `vid`,
`exp_id`, `exp`, `type_id`, `answer`, `masks` (one RLE per frame), `J`, `F` (and `A`, `R` for ReVOS) as
fractions, `error` when it failed (scored as empty masks); `metrics.json`: the summaries x100 and counts.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Optional

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from projects.desa2va.common.masks import (MaskDecodeError, decode_segmentation, encode_rle,  # noqa: E402
                                           segmentation_area)
from projects.desa2va.datasets.base import open_image, read_json  # noqa: E402
from projects.desa2va.datasets.mevis_revos import RefVOSDataset  # noqa: E402
from projects.desa2va.datasets.ref_ytvos import DAVIS17Dataset, RefYTVOSDataset  # noqa: E402
from projects.desa2va.datasets.template import SampleError  # noqa: E402
from projects.desa2va.inference.video import predict_video  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, audit_ground_truth, init_distributed,  # noqa: E402
                                                load_model, mean_scores, parse_overrides, print_table,
                                                run_and_merge, save_video_vis, video_question as question,
                                                vis_name, write_outputs)
from projects.desa2va.evaluation.metrics import j_and_f, pixel_accuracy, robustness  # noqa: E402
from projects.desa2va.evaluation.submission import write_submission  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    reader: type
    data_root: str
    frames_dir: str
    expression_file: str
    mask_file: Optional[str]               # None: no public ground truth (a server submission)
    foreground_file: Optional[str] = None  # ReVOS's per-frame foreground, for R


DATASETS = {
    "DAVIS": Benchmark(DAVIS17Dataset, "data/video_datas/davis17", "valid/JPEGImages",
                       "meta_expressions/valid/meta_expressions.json", "valid/mask_dict.pkl"),
    "MEVIS_U": Benchmark(RefVOSDataset, "data/video_datas/mevis/valid_u", "JPEGImages", "meta_expressions.json",
                         "mask_dict.json"),
    "MEVIS": Benchmark(RefVOSDataset, "data/video_datas/mevis/valid", "JPEGImages", "meta_expressions.json", None),
    "REFYTVOS": Benchmark(RefYTVOSDataset, "data/video_datas/rvos", "valid/JPEGImages",
                          "meta_expressions/valid/meta_expressions.json", None),
    "REVOS": Benchmark(RefVOSDataset, "data/video_datas/revos", "", "meta_expressions_valid_.json", "mask_dict.json",
                       "mask_dict_foreground.json"),
}
TYPE_NAMES = {0: "referring", 1: "reasoning", 2: "no_target"}
def summarize(records, revos: bool, robustness_scored: bool = True) -> dict:
    out = {"num_expressions": len(records), "num_failed": sum(1 for r in records if "error" in r)}
    if not revos:
        out.update(mean_scores(records, "", ("J", "F")))
        return out
    keys = ("J", "F", "A", "R") if robustness_scored else ("J", "F", "A")
    parts = {t: mean_scores([r for r in records if r.get("type_id", 0) == t], f"{name}/", keys)
             for t, name in TYPE_NAMES.items()}
    for p in parts.values():
        out.update(p)
    if parts[0] and parts[1]:  # the official `overall`: the mean of the referring and reasoning means
        for m in keys + ("J&F",):
            out[f"overall/{m}"] = (parts[0][f"referring/{m}"] + parts[1][f"reasoning/{m}"]) / 2
    return out


def foreground_areas(path: str, videos: dict) -> dict:
    """{video: [foreground pixels per frame]} from ReVOS's `mask_dict_foreground.json` ({video: {"masks_rle":
    [RLE per frame]}}; a frame given as a list of RLEs counts their areas summed, as the official code
    sums the decoded masks), checked against `videos` = {video: (num_frames, height, width)}."""
    data = read_json(path)
    out = {}
    for vid, (n, h, w) in videos.items():
        rles = (data.get(vid) or {}).get("masks_rle")
        if rles is None or len(rles) != n:
            raise SystemExit(f"{path}: video {vid} needs 'masks_rle' with one RLE per frame ({n}), found "
                             f"{'none' if rles is None else len(rles)}")
        areas = []
        for t, r in enumerate(rles):
            parts = r if isinstance(r, list) else [r]
            if not parts or any(not isinstance(x, dict) or list(x.get("size", [])) != [h, w] for x in parts):
                raise SystemExit(f"{path}: video {vid} frame {t}: expected an RLE of size {[h, w]}")
            areas.append(sum(segmentation_area(x, h, w) for x in parts))
        out[vid] = areas
    return out


def frame_size(ds, vid, item, names):
    """(H, W) of a video whose frames could not all be read: the json / mask file, else any readable frame."""
    h, w = ds.frame_size(item)
    if h is not None:
        return h, w
    for name in names:
        try:
            with Image.open(ds.frame_path(vid, name)) as im:
                return im.height, im.width
        except Exception:
            continue
    return None, None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    add_override_arg(p)
    p.add_argument("--dataset", default="MEVIS_U", choices=sorted(DATASETS) + ["REFSAV"])
    p.add_argument("--data_root", default=None)
    p.add_argument("--frames_dir", default=None)
    p.add_argument("--expression_file", default=None)
    p.add_argument("--mask_file", default="", help="'' = the dataset's default; 'none' = no ground truth")
    p.add_argument("--foreground_file", default=None, help="ReVOS: the per-frame foreground for R (default "
                                                           "mask_dict_foreground.json; 'none' = no R)")
    p.add_argument("--work_dir", default=None)
    p.add_argument("--submit", action="store_true", help="also write Annotations/<vid>/<exp>/<frame>.png and a zip")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="first N videos only (smoke tests)")
    p.add_argument("--vis", type=int, default=0, metavar="N",
                   help="save prediction | ground truth clips (mp4) and frame strips of the first N expressions "
                        "in <work_dir>/vis")
    a = p.parse_args(argv)
    if a.dataset == "REFSAV":
        from projects.desa2va.evaluation.refsav_eval import evaluate_refsav

        return evaluate_refsav(a, p)
    bench = DATASETS[a.dataset]
    root = a.data_root or bench.data_root
    frames_dir = a.frames_dir if a.frames_dir is not None else bench.frames_dir
    exp_file = a.expression_file or bench.expression_file
    mask_file = {"": bench.mask_file, "none": None}.get(a.mask_file, a.mask_file)
    if a.foreground_file and a.dataset != "REVOS":
        p.error("--foreground_file is ReVOS's (R)")
    fg_file = {None: bench.foreground_file, "none": None}.get(a.foreground_file, a.foreground_file) \
        if mask_file else None
    gt_files = [os.path.join(root, f) for f in (mask_file, fg_file) if f]
    for path in [os.path.join(root, exp_file), a.model_path] + gt_files:  # fail before loading anything
        if not os.path.exists(path):
            p.error(f"not found: {path}")
    submit = a.submit or mask_file is None
    revos = a.dataset == "REVOS"
    work_dir = a.work_dir or os.path.join("work_dirs", "eval", a.dataset.lower())
    ds = bench.reader(data_root=root, expression_file=exp_file, mask_file=mask_file, frames_dir=frames_dir,
                      mode="eval", skip_no_target=False, model_path=os.path.join(a.model_path, "mllm"),
                      on_bad_sample="raise")
    by_video = {}
    for i in range(len(ds)):
        by_video.setdefault(ds.item_info(i)["vid"], []).append(i)
    videos = sorted(by_video)[:a.limit]
    audit = {"empty": [], "absent": []}
    if mask_file:
        entries = []
        for vid in videos:
            for i in by_video[vid]:
                it = ds.item_info(i)
                e = it["expressions"][0]
                if e["type_id"] != 2:  # "no target": empty by design
                    entries.append((f"{vid}/{e['exp_id']}", e["anno_id"], ds.has_target(it, e)))
        audit = audit_ground_truth(entries, os.path.join(root, mask_file))
    foreground = None
    if fg_file:
        shapes = {}
        for vid in videos:
            it = ds.item_info(by_video[vid][0])
            shapes[vid] = (len(it["frames"]), *ds.frame_size(it))
        foreground = foreground_areas(os.path.join(root, fg_file), shapes)
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(vid):
        items = [ds.item_info(i) for i in by_video[vid]]
        names = items[0]["frames"]
        error, frames = None, []
        try:
            frames = [open_image(ds.frame_path(vid, f), vid) for f in names]
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        h, w = (frames[0].height, frames[0].width) if frames else frame_size(ds, vid, items[0], names)
        outs = [None] * len(items)
        if error is None:  # all expressions of the video in one call: one SAM-2 state, features once
            try:
                outs = predict_video(model, [question(it["expressions"][0]["exp"]) for it in items], frames)
            except Exception as ex:
                error = f"{type(ex).__name__}: {ex}"
        results = []
        for it, out in zip(items, outs):
            e = it["expressions"][0]
            rec = {"vid": vid, "exp_id": e["exp_id"], "exp": e["exp"], "type_id": e["type_id"]}
            pred, err = None, error
            if out is not None:
                rec["answer"] = out["text"]
                pred, err = (out["masks"][0], None) if out["masks"] else (None, "no [SEG] in the answer")
            if pred is None and h is not None:
                pred = np.zeros((len(names), h, w), bool)
            if pred is not None:
                rec["masks"] = [encode_rle(m) for m in pred]
            if pred is not None and ds.has_masks:
                try:
                    gt = ds.expression_masks(it, e, list(range(len(names))), h, w)
                except (SampleError, MaskDecodeError) as ex:
                    err = err or f"ground truth: {ex}"
                else:
                    rec["J"], rec["F"] = j_and_f(list(pred), list(gt))
                    if revos:
                        rec["A"] = pixel_accuracy(list(pred), list(gt))
                    if foreground is not None:
                        rec["R"] = robustness(list(pred), list(gt), foreground[vid])
            if err:
                rec["error"] = err
            results.append(rec)
        return {"expressions": results}

    merged = run_and_merge(videos, evaluate, work_dir, rank, world, a.resume, a.dataset, all_ranks=submit)
    records = []
    for video in merged:
        if "expressions" not in video:  # evaluate() itself raised: every expression of the video failed
            for i in by_video[video["key"]]:
                e = ds.item_info(i)["expressions"][0]
                records.append({"key": f"{video['key']}/{e['exp_id']}", "vid": video["key"], "exp_id": e["exp_id"],
                                "exp": e["exp"], "type_id": e["type_id"], "error": video["error"]})
            continue
        records += [{"key": f"{r['vid']}/{r['exp_id']}", **r} for r in video["expressions"]]
    if rank == 0:
        metrics = summarize(records, revos, foreground is not None) if ds.has_masks else \
            {"num_expressions": len(records), "num_failed": sum(1 for r in records if "error" in r)}
        if mask_file:
            metrics.update(num_empty_gt=len(audit["empty"]), empty_gt=audit["empty"],
                           num_absent_gt=len(audit["absent"]), absent_gt=audit["absent"])
        write_outputs(work_dir, records, metrics)
        save_vis(a.vis, ds, by_video, records, work_dir)
    if submit:
        entries = [(r["vid"], r["exp_id"], ds.item_info(by_video[r["vid"]][0])["frames"], r.get("masks"))
                   for r in records]
        zip_path = write_submission(work_dir, entries, rank, world)
        if rank == 0:
            metrics["submission"] = zip_path
            write_outputs(work_dir, records, metrics)
    if rank != 0:
        return {}
    print_table(f"{a.dataset} ({work_dir})", {k: v for k, v in metrics.items() if not isinstance(v, list)})
    return metrics


def save_vis(n: int, ds, by_video: dict, records, work_dir) -> None:
    """--vis N: prediction | ground truth clips of the first N expressions with masks."""
    for r in [r for r in records if "masks" in r][:n]:
        vid = r["vid"]
        it = next(ds.item_info(i) for i in by_video[vid] if ds.item_info(i)["expressions"][0]["exp_id"] == r["exp_id"])
        try:
            frames = [open_image(ds.frame_path(vid, f), vid) for f in it["frames"]]
            h, w = frames[0].height, frames[0].width
            gt = ds.expression_masks(it, it["expressions"][0], list(range(len(frames))), h, w) if ds.has_masks \
                else None
        except (SampleError, MaskDecodeError):  # its error is in results.jsonl already
            continue
        pred = np.stack([decode_segmentation(m, h, w) for m in r["masks"]])
        save_video_vis(work_dir, vis_name(vid, r["exp_id"], r["exp"]), frames, pred, gt,
                       f"{r['exp']}" + (f" (J&F {(r['J'] + r['F']) / 2:.2f})" if "J" in r else ""))


if __name__ == "__main__":
    main()
