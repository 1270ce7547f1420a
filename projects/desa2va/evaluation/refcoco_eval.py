"""Referring image segmentation on RefCOCO / RefCOCO+ / RefCOCOg: cIoU and gIoU.

    python projects/desa2va/evaluation/refcoco_eval.py --model_path P --dataset refcoco --split val
    bash projects/desa2va/evaluation/dist_test.sh refcoco_eval P 8 --dataset refcocog --split test

Protocol (refer API, as LISA / GLaMM / Sa2VA score it): one sample per (ref, sentence) of the split;
cIoU = sum over samples of |P & G| / sum of |P | G|; gIoU = mean per-sample IoU (1 when both are empty).
Ground truth: `<data_root>/<dataset>/instances.json` (`--instances_file`; COCO polygons or RLE) and the
refs pickle (`--refs_file`, default `refs(unc).p`, RefCOCOg `refs(umd).p`); the ref's `ann_id` names its
mask. A failed sample (unreadable image, no [SEG] in the answer) is recorded with its reason and scored
as an empty mask: it counts in cIoU's union (Sa2VA's script dropped it). Before the model loads, samples
whose mask is empty or whose ann_id is absent are named in a warning and counted (`num_empty_gt`,
`num_absent_gt`); when that holds for every sample the script stops.

Outputs in `--work_dir`: `results.jsonl`, one line per sample in the refs file's order: `key`
(`<image_id>_<ref_id>_<k>`), `image_id`, `ref_id`, `ann_id`, `sentence`, `answer`, `mask` (RLE or null),
`inter`, `union` (pixels), `iou` (fraction), `error`; `metrics.json`: `ciou`, `giou` x100 and counts.
"""
from __future__ import annotations

import argparse
import os
import random
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import numpy as np  # noqa: E402

from projects.desa2va.common.masks import MaskDecodeError, decode_segmentation, encode_rle  # noqa: E402
from projects.desa2va.datasets.refcoco import REFS_FILES, RefCOCODataset  # noqa: E402
from projects.desa2va.datasets.template import SampleError, referring_question  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, audit_ground_truth, first_mask,  # noqa: E402
                                                init_distributed, load_model, parse_overrides, percent,
                                                print_table, run_and_merge, save_image_vis, vis_name,
                                                write_outputs)

SPLITS = {"refcoco": ("val", "testA", "testB"), "refcoco+": ("val", "testA", "testB"), "refcocog": ("val", "test")}


def question(sentence: str) -> str:
    return "<image>\n" + referring_question(sentence)


def summarize(records) -> dict:
    inter = sum(r["inter"] for r in records)
    union = sum(r["union"] for r in records)
    ious = [r["iou"] for r in records]
    return {"ciou": percent(inter / union if union else 1.0), "giou": percent(np.mean(ious)) if ious else 0.0,
            "num_samples": len(records), "num_failed": sum(1 for r in records if "error" in r)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    add_override_arg(p)
    p.add_argument("--dataset", default="refcoco", choices=sorted(SPLITS))
    p.add_argument("--split", default="val")
    p.add_argument("--data_root", default="data/ref_seg", help="folder holding <dataset>/instances.json, refs")
    p.add_argument("--image_folder", default="data/glamm_data/images/coco2014/train2014")
    p.add_argument("--refs_file", default=None, help=f"default: {REFS_FILES}")
    p.add_argument("--instances_file", default="instances.json", help="COCO annotations, under the dataset folder")
    p.add_argument("--work_dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="first N sentences only (smoke tests)")
    p.add_argument("--vis", type=int, default=0, metavar="N",
                   help="save prediction | ground truth overlays of the first N sentences in <work_dir>/vis")
    a = p.parse_args(argv)
    if a.split not in SPLITS[a.dataset] and a.dataset in SPLITS:
        p.error(f"--split for {a.dataset} is one of {SPLITS[a.dataset]}")
    data_dir = os.path.join(a.data_root, a.dataset)
    for path in (data_dir, a.image_folder, a.model_path):  # fail before loading anything
        if not os.path.isdir(path):
            p.error(f"not found: {path}")
    work_dir = a.work_dir or os.path.join("work_dirs", "eval", f"{a.dataset}_{a.split}")
    ds = RefCOCODataset(data_root=data_dir, image_folder=a.image_folder, split=a.split, mode="eval",
                        refs_file=a.refs_file, instances_file=a.instances_file,
                        model_path=os.path.join(a.model_path, "mllm"), on_bad_sample="raise")
    refs = ds.references()[:a.limit]
    index = {r["key"]: i for i, r in enumerate(refs)}
    audit = audit_ground_truth([(r["key"], [f"ann_id {r['ann_id']}"], ds.has_target(i)) for i, r in enumerate(refs)],
                               os.path.join(data_dir, a.instances_file), what="sentences")
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(key):
        i = index[key]
        rec = {k: refs[i][k] for k in ("image_id", "ref_id", "ann_id", "sentence")}
        try:
            gt = ds.ground_truth(i)
        except (SampleError, MaskDecodeError) as e:  # counted in num_absent_gt / num_failed, scored 0
            return dict(rec, inter=0, union=0, iou=0.0, mask=None, error=f"ground truth: {e}")
        try:
            image = ds.load(i, random.Random(0)).images[0]
        except Exception as e:
            pred, error = None, f"{type(e).__name__}: {e}"
        else:
            pred, error = first_mask(model, question(refs[i]["sentence"]), rec, image=image)
        p_mask = np.zeros_like(gt) if pred is None else pred
        inter, union = int((p_mask & gt).sum()), int((p_mask | gt).sum())
        rec.update(inter=inter, union=union, iou=inter / union if union else 1.0,
                   mask=None if pred is None else encode_rle(pred))
        if error:
            rec["error"] = error
        return rec

    records = run_and_merge([r["key"] for r in refs], evaluate, work_dir, rank, world, a.resume,
                            f"{a.dataset} {a.split}")
    if rank != 0:
        return {}
    metrics = summarize(records)
    metrics.update(num_empty_gt=len(audit["empty"]), empty_gt=audit["empty"], num_absent_gt=len(audit["absent"]),
                   absent_gt=audit["absent"])
    write_outputs(work_dir, records, metrics)
    for r in records[:a.vis]:
        i = index[r["key"]]
        try:
            image, gt = ds.load(i, random.Random(0)).images[0], ds.ground_truth(i)
        except (SampleError, MaskDecodeError):  # an unreadable image has its error in results.jsonl already
            continue
        pred = decode_segmentation(r["mask"], image.height, image.width) if r.get("mask") else None
        save_image_vis(work_dir, vis_name(r["image_id"], r["sentence"]), image, pred, gt,
                       f"{r['sentence']} (IoU {r['iou']:.2f})")
    print_table(f"{a.dataset} {a.split} ({work_dir})", {k: v for k, v in metrics.items() if not isinstance(v, list)})
    return metrics


if __name__ == "__main__":
    main()
