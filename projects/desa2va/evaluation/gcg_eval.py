"""Grounded conversation generation (GranD-f val/test): mask AP50, mIoU, recall and caption metrics.

    python projects/desa2va/evaluation/gcg_eval.py --model_path P --split val

Ground truth (GLaMM's layout, `--gt_dir`): `<split>_gcg_coco_caption_gt.json` (COCO captions: `images`
with `id` and `file_name`, `annotations` with `image_id`, `caption` and, when present, `labels` = the
grounded phrases) and `<split>_gcg_coco_mask_gt.json` (COCO instances: one RLE `segmentation` per
grounded phrase, in phrase order). The model is asked for a grounded description; its answer's
`<p> phrase </p> [SEG]` spans give the phrases and, in order, the masks.

Metrics: mask AP50 (pycocotools), mIoU (greedy one-to-one matching per image), recall (IoU >= 0.5 and
phrase similarity >= 0.5; word-level F1 stands in for GLaMM's BERT similarity, so that nothing is
downloaded), and METEOR / CIDEr through `pycocoevalcap` when it is installed (otherwise the summary says
they were skipped and why). An image whose prediction fails is recorded with its reason and counts as
no masks and an empty caption.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))


from projects.desa2va.common.masks import decode_segmentation, encode_rle  # noqa: E402
from projects.desa2va.datasets.base import open_image, read_json  # noqa: E402
from projects.desa2va.datasets.gcg import GCG_QUESTIONS  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, init_distributed, load_model,  # noqa: E402
                                                parse_overrides, print_table, run_and_merge,
                                                write_outputs)
from projects.desa2va.evaluation.metrics import caption_metrics, gcg_miou, gcg_recall, mask_ap50  # noqa: E402

PHRASE = re.compile(r"<p>\s*(.*?)\s*</p>")


def parse_answer(text: str):
    """(clean caption, phrases) from an answer with `<p> phrase </p> [SEG]` spans."""
    phrases = PHRASE.findall(text)
    caption = PHRASE.sub(lambda m: m.group(1), text).replace("[SEG]", "")
    caption = re.sub(r"<\|im_end\|>", "", caption)
    return re.sub(r"\s+([,.!?;:])", r"\1", re.sub(r"\s+", " ", caption)).strip(), phrases


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    add_override_arg(p)
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--gt_dir", default="data/glamm_data/annotations/val_test")
    p.add_argument("--image_folder", default="data/glamm_data/images/GranDf_HA_images/val_test")
    p.add_argument("--work_dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    cap_path = os.path.join(a.gt_dir, f"{a.split}_gcg_coco_caption_gt.json")
    mask_path = os.path.join(a.gt_dir, f"{a.split}_gcg_coco_mask_gt.json")
    for path in (cap_path, mask_path, a.image_folder, a.model_path):
        if not os.path.exists(path):
            p.error(f"not found: {path}")
    work_dir = a.work_dir or os.path.join("work_dirs", "eval", f"gcg_{a.split}")
    caps, masks = read_json(cap_path), read_json(mask_path)
    images = {str(im["id"]): im for im in caps["images"]}
    gt_caption = {str(c["image_id"]): c for c in caps["annotations"]}
    mask_images = {str(im["id"]): im for im in masks["images"]}
    gt_masks = {}
    for ann in masks["annotations"]:
        gt_masks.setdefault(str(ann["image_id"]), []).append(ann)
    keys = sorted(images)[:a.limit]
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(key):
        im = images[key]
        image = open_image(os.path.join(a.image_folder, im["file_name"]), key)
        out = model.predict("<image>\n" + GCG_QUESTIONS[0], image=image)
        caption, phrases = parse_answer(out["text"])
        return {"answer": out["text"], "caption": caption, "phrases": phrases,
                "masks": [encode_rle(m) for m in out["masks"]]}

    records = run_and_merge(keys, evaluate, work_dir, rank, world, a.resume, f"GCG {a.split}")
    if rank != 0:
        return {}
    per_image = []
    for r in records:
        key = r["key"]
        h = int(mask_images.get(key, images[key]).get("height", 0) or 0)
        w = int(mask_images.get(key, images[key]).get("width", 0) or 0)
        gts = [decode_segmentation(g["segmentation"], h, w) for g in gt_masks.get(key, [])]
        preds = [decode_segmentation(m, h, w) for m in r.get("masks", [])]
        labels = gt_caption.get(key, {}).get("labels") or []
        per_image.append({"pred": preds, "gt": gts, "pred_phrases": r.get("phrases", [])[:len(preds)] +
                          [""] * max(0, len(preds) - len(r.get("phrases", []))), "gt_phrases": labels})
    metrics = {"mask_AP50": mask_ap50(per_image), "mIoU": gcg_miou(per_image),
               "num_images": len(records), "num_failed": sum(1 for r in records if "error" in r)}
    if all(len(im["gt_phrases"]) == len(im["gt"]) for im in per_image):
        metrics["recall"] = gcg_recall(per_image)
    else:
        metrics["recall"] = "skipped: the caption ground truth has no 'labels' for every mask"
    metrics.update(caption_metrics({k: c["caption"] for k, c in gt_caption.items() if k in set(keys)},
                                   {r["key"]: r.get("caption", "") for r in records}))
    write_outputs(work_dir, records, metrics)
    print_table(f"GCG {a.split} ({work_dir})", metrics)
    return metrics


if __name__ == "__main__":
    main()
