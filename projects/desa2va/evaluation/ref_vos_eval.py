"""Referring video object segmentation: J, F, J&F (DAVIS17, MeViS, Ref-YouTube-VOS, ReVOS).

    python projects/desa2va/evaluation/ref_vos_eval.py --model_path P --dataset MEVIS_U
    bash projects/desa2va/evaluation/dist_test.sh ref_vos_eval P 8 --dataset REVOS
    python projects/desa2va/evaluation/ref_vos_eval.py --model_path P --dataset MEVIS --submit

Videos are sharded over ranks; each video's frames are decoded once, and all its expressions are
answered in one `predict_video` call that tracks their objects in one SAM-2 state. The merged
`results.jsonl` has exactly one entry per (video, expression), in sorted order; a failed expression is
recorded with its reason and scored as empty masks. J, F and J&F are reported x100 (J&F = (J + F) / 2,
J and F = means over expressions of per-expression means over frames). ReVOS adds A and R and reports
referring (type 0), reasoning (type 1) and their mean; no-target expressions (type 2) are reported apart.
`--dataset REFSAV` reads the Ref-SAV release layout (`--expression_file` the annotation json,
`--data_root` the SA-V video folder) and asks every object with its long and its short caption on every
annotated frame (J, F, J&F per long / short / overall). `--submit` writes the servers' format, `Annotations/<vid>/<exp_id>/<frame>.png` (0/255), and a zip; it
is the only output for splits without ground truth (MeViS valid, Ref-YouTube-VOS valid).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from projects.desa2va.common.masks import decode_segmentation, encode_rle  # noqa: E402
from projects.desa2va.datasets.base import open_image  # noqa: E402
from projects.desa2va.datasets.mevis_revos import RefVOSDataset  # noqa: E402
from projects.desa2va.datasets.ref_ytvos import RefYTVOSDataset  # noqa: E402
from projects.desa2va.datasets.template import referring_question  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, init_distributed, load_model,  # noqa: E402
                                                parse_overrides, print_table, run_and_merge,
                                                save_video_vis, vis_name, write_outputs)
from projects.desa2va.evaluation.metrics import j_and_f, pixel_accuracy, robustness  # noqa: E402

# data_root, frames_dir, expression_file, mask_file (None: no ground truth -> --submit), reader
DATASETS = {
    "DAVIS": ("data/video_datas/davis17", "valid/JPEGImages", "meta_expressions/valid/meta_expressions.json",
              "valid/mask_dict.pkl", RefVOSDataset),
    "MEVIS_U": ("data/video_datas/mevis/valid_u", "JPEGImages", "meta_expressions.json", "mask_dict.json",
                RefVOSDataset),
    "MEVIS": ("data/video_datas/mevis/valid", "JPEGImages", "meta_expressions.json", None, RefVOSDataset),
    "REFYTVOS": ("data/video_datas/rvos", "valid/JPEGImages", "meta_expressions/valid/meta_expressions.json", None,
                 RefYTVOSDataset),
    "REVOS": ("data/video_datas/revos", "", "meta_expressions_valid_.json", "mask_dict.json", RefVOSDataset),
}
TYPE_NAMES = {0: "referring", 1: "reasoning", 2: "no_target"}
# Ref-SAV: the release's layout (videos with SA-V masklets and long/short captions), read by RefSAVDataset
REFSAV_DEFAULTS = ("data/video_datas/sam_v_full", "data/video_datas/ref_sav_val.json")


def question(expression: str) -> str:
    return referring_question(expression, video=True)  # ReVOS reasoning questions are asked as they are


def save_pngs(root: str, vid: str, exp_id: str, frames, masks: np.ndarray) -> None:
    folder = os.path.join(root, "Annotations", vid, exp_id)
    os.makedirs(folder, exist_ok=True)
    for name, m in zip(frames, masks):
        Image.fromarray(m.astype(np.uint8) * 255).save(os.path.join(folder, f"{name}.png"))


def summarize(records, revos: bool) -> dict:
    # an expression that could not be scored at all (its ground truth failed to decode) counts as 0
    scored = [r if "J" in r else {**r, "J": 0.0, "F": 0.0, "A": 0.0, "R": 0.0} for r in records]
    out = {"num_expressions": len(records), "num_failed": sum(1 for r in records if "error" in r)}

    def group(rs, prefix=""):
        if not rs:
            return {}
        j, f = 100 * float(np.mean([r["J"] for r in rs])), 100 * float(np.mean([r["F"] for r in rs]))
        g = {f"{prefix}J": j, f"{prefix}F": f, f"{prefix}J&F": (j + f) / 2}
        if revos:
            g[f"{prefix}A"] = 100 * float(np.mean([r["A"] for r in rs]))
            g[f"{prefix}R"] = 100 * float(np.mean([r["R"] for r in rs]))
        return g
    if not revos:
        out.update(group(scored))
        return out
    parts = {t: group([r for r in scored if r.get("type_id", 0) == t], f"{name}/") for t, name in TYPE_NAMES.items()}
    for p in parts.values():
        out.update(p)
    both = [parts[0], parts[1]]
    if all(both):
        for m in ("J", "F", "J&F", "A", "R"):
            out[f"overall/{m}"] = (both[0][f"referring/{m}"] + both[1][f"reasoning/{m}"]) / 2
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    add_override_arg(p)
    p.add_argument("--dataset", default="MEVIS_U", choices=sorted(DATASETS) + ["REFSAV"])
    p.add_argument("--data_root", default=None)
    p.add_argument("--frames_dir", default=None)
    p.add_argument("--expression_file", default=None)
    p.add_argument("--mask_file", default="", help="'' = the dataset's default; 'none' = no ground truth")
    p.add_argument("--work_dir", default=None)
    p.add_argument("--submit", action="store_true", help="write Annotations/<vid>/<exp>/<frame>.png and a zip")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="first N videos only (smoke tests)")
    p.add_argument("--vis", type=int, default=0, metavar="N",
                   help="save prediction | ground truth clips (mp4) and frame strips of the first N expressions "
                        "in <work_dir>/vis")
    a = p.parse_args(argv)
    if a.dataset == "REFSAV":
        return evaluate_refsav(a, p)
    root, frames_dir, exp_file, mask_file, reader = DATASETS[a.dataset]
    root = a.data_root or root
    frames_dir = a.frames_dir if a.frames_dir is not None else frames_dir
    exp_file = a.expression_file or exp_file
    mask_file = {"": mask_file, "none": None}.get(a.mask_file, a.mask_file)
    for path in (os.path.join(root, exp_file), a.model_path):  # fail before loading anything
        if not os.path.exists(path):
            p.error(f"not found: {path}")
    submit = a.submit or mask_file is None
    work_dir = a.work_dir or os.path.join("work_dirs", "eval", a.dataset.lower())
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))
    ds = reader(data_root=root, expression_file=exp_file, mask_file=mask_file, frames_dir=frames_dir, mode="eval",
                skip_no_target=False, model_path=os.path.join(a.model_path, "mllm"), on_bad_sample="raise",
                sam_size=model.grounding.image_size)
    by_video = {}
    for i in range(len(ds)):
        by_video.setdefault(ds.item_info(i)["vid"], []).append(i)
    videos = sorted(by_video)[:a.limit]
    writer = ThreadPoolExecutor(max_workers=2) if submit else None  # PNG writing off the critical path

    def evaluate(vid):
        items = [ds.item_info(i) for i in by_video[vid]]
        names = items[0]["frames"]
        error, frames = None, []
        try:
            frames = [open_image(ds.frame_path(vid, f), vid) for f in names]
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
        h, w = (frames[0].height, frames[0].width) if frames else ds.frame_size(items[0])
        gts = [ds.expression_masks(it, it["expressions"][0], list(range(len(names))), h, w) if ds.has_masks
               else None for it in items]
        foreground = np.any([g.any(0) for g in gts], axis=0) if ds.has_masks else None
        outs = [None] * len(items)
        if error is None:  # all expressions of the video in one call: one SAM-2 state, features once
            try:
                outs = model.predict_video([question(it["expressions"][0]["exp"]) for it in items], frames)
            except Exception as ex:
                error = f"{type(ex).__name__}: {ex}"
        results = []
        for it, gt, out in zip(items, gts, outs):
            e = it["expressions"][0]
            rec = {"vid": vid, "exp_id": e["exp_id"], "exp": e["exp"], "type_id": e["type_id"]}
            pred, err = None, error
            if out is not None:
                rec["answer"] = out["text"]
                pred, err = (out["masks"][0], None) if out["masks"] else (None, "no [SEG] in the answer")
            if pred is None and h is not None:
                pred = np.zeros((len(names), h, w), bool)
            if err:
                rec["error"] = err
            if pred is not None:
                rec["masks"] = [encode_rle(m) for m in pred]
                if writer is not None:
                    writer.submit(save_pngs, work_dir, vid, e["exp_id"], names, pred)
                if gt is not None:
                    rec["J"], rec["F"] = j_and_f(list(pred), list(gt))
                    rec["A"] = pixel_accuracy(list(pred), list(gt))
                    rec["R"] = robustness(list(pred), list(gt), foreground)
            results.append(rec)
        return {"expressions": results}

    merged = run_and_merge(videos, evaluate, work_dir, rank, world, a.resume, a.dataset,
                           finish=(lambda: writer.shutdown(wait=True)) if writer is not None else None)
    if rank != 0:
        return {}
    records = []
    for video in merged:
        if "error" in video and "expressions" not in video:  # the whole video failed before any expression
            for i in by_video[video["key"]]:
                e = ds.item_info(i)["expressions"][0]
                records.append({"key": f"{video['key']}/{e['exp_id']}", "error": video["error"]})
            continue
        for r in video["expressions"]:
            records.append({"key": f"{r['vid']}/{r['exp_id']}", **r})
    metrics = summarize(records, revos=a.dataset == "REVOS") if ds.has_masks else \
        {"num_expressions": len(records), "num_failed": sum(1 for r in records if "error" in r)}
    write_outputs(work_dir, records, metrics)
    for r in [r for r in records if "exp" in r][:a.vis]:
        vid = r["vid"]
        it = next(ds.item_info(i) for i in by_video[vid] if ds.item_info(i)["expressions"][0]["exp_id"] == r["exp_id"])
        try:
            frames = [open_image(ds.frame_path(vid, f), vid) for f in it["frames"]]
        except Exception:  # its error is in results.jsonl already
            continue
        h, w = frames[0].height, frames[0].width
        pred = np.stack([decode_segmentation(m, h, w) for m in r["masks"]]) if r.get("masks") else None
        gt = ds.expression_masks(it, it["expressions"][0], list(range(len(frames))), h, w) if ds.has_masks else None
        save_video_vis(work_dir, vis_name(vid, r["exp_id"], r["exp"]), frames, pred, gt,
                       f"{r['exp']}" + (f" (J&F {(r['J'] + r['F']) / 2:.2f})" if "J" in r else ""))
    if submit:
        shutil.make_archive(os.path.join(work_dir, "submission"), "zip", work_dir, "Annotations")
        metrics["submission"] = os.path.join(work_dir, "submission.zip")
    print_table(f"{a.dataset} ({work_dir})", metrics)
    return metrics


def evaluate_refsav(a, parser) -> dict:
    """Ref-SAV: every object asked with its long and with its short caption, on every annotated frame
    (`--data_root` = the SA-V video folder, `--expression_file` = the annotation json)."""
    from projects.desa2va.datasets.ref_sav import RefSAVDataset

    video_folder = a.data_root or REFSAV_DEFAULTS[0]
    ann = a.expression_file or REFSAV_DEFAULTS[1]
    for path in (ann, video_folder, a.model_path):
        if not os.path.exists(path):
            parser.error(f"not found: {path}")
    work_dir = a.work_dir or os.path.join("work_dirs", "eval", "refsav")
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))
    ds = RefSAVDataset(annotation_file=ann, video_folder=video_folder, model_path=os.path.join(a.model_path, "mllm"),
                       on_bad_sample="raise", sam_size=model.grounding.image_size)
    index = {ds.items[i]["vid"]: i for i in range(len(ds))}
    videos = sorted(index)[:a.limit]

    def evaluate(vid):
        _, frames, objs = ds.eval_item(index[vid])
        asks = [(obj_id, kind, text, gt) for obj_id, gt, long, short in objs
                for kind, text in (("long", long), ("short", short))]
        try:
            outs = model.predict_video([question(t) for _, _, t, _ in asks], frames)
            error = None
        except Exception as ex:
            outs, error = [None] * len(asks), f"{type(ex).__name__}: {ex}"
        results = []
        for (obj_id, kind, text, gt), out in zip(asks, outs):
            rec = {"vid": vid, "obj_id": obj_id, "caption": kind, "exp": text}
            err = error
            pred = None
            if out is not None:
                rec["answer"] = out["text"]
                pred, err = (out["masks"][0], None) if out["masks"] else (None, "no [SEG] in the answer")
            if pred is None:
                pred = np.zeros_like(gt)
            if err:
                rec["error"] = err
            rec["J"], rec["F"] = j_and_f(list(pred), list(gt))
            rec["masks"] = [encode_rle(m) for m in pred]
            results.append(rec)
        return {"expressions": results}

    merged = run_and_merge(videos, evaluate, work_dir, rank, world, a.resume, "REFSAV")
    if rank != 0:
        return {}
    records = []
    for v in merged:
        if "expressions" in v:
            records += [{"key": f"{r['vid']}/{r['obj_id']}/{r['caption']}", **r} for r in v["expressions"]]
            continue
        for obj_id in ds.items[index[v["key"]]]["objects"]:  # the video itself failed: nothing is dropped
            records += [{"key": f"{v['key']}/{obj_id}/{kind}", "vid": v["key"], "obj_id": obj_id, "caption": kind,
                         "error": v["error"], "J": 0.0, "F": 0.0} for kind in ("long", "short")]
    failed_videos = [v["key"] for v in merged if "expressions" not in v]
    metrics = {"num_expressions": len(records), "num_failed": sum(1 for r in records if "error" in r),
               "failed_videos": len(failed_videos)}
    for kind in ("long", "short", None):
        rs = [r for r in records if kind is None or r["caption"] == kind]
        if rs:
            j, f = 100 * float(np.mean([r["J"] for r in rs])), 100 * float(np.mean([r["F"] for r in rs]))
            prefix = f"{kind}/" if kind else "overall/"
            metrics.update({f"{prefix}J": j, f"{prefix}F": f, f"{prefix}J&F": (j + f) / 2})
    write_outputs(work_dir, records, metrics)
    print_table(f"REFSAV ({work_dir})", metrics)
    return metrics


if __name__ == "__main__":
    main()
