"""Grounded conversation generation (GranD-f val/test): mask AP50, mIoU, recall and caption metrics.

    python projects/desa2va/evaluation/gcg_eval.py --model_path P --split val [--bert_path pretrained/bert-base-uncased]

Protocol: GLaMM's `eval_gcg` as Sa2VA's `evaluation/metrics_gcg.py` runs it. Ground truth (GLaMM's
layout, `--gt_dir`, each file overridable): `<split>_gcg_coco_caption_gt.json` (`--caption_gt_file`; COCO
captions: `images` with `id` and `file_name`, `annotations` with `image_id`, `caption` and `labels`, the
grounded phrases) and `<split>_gcg_coco_mask_gt.json` (`--mask_gt_file`; COCO instances, one RLE
`segmentation` per grounded phrase). The model is asked for a grounded description; its answer's
`<p> phrase </p> [SEG]` spans give the phrases and, in order, the masks.

- mask AP50: pycocotools COCOeval `segm` of every predicted mask (score 1, category 1) against the mask
  file, `catIds = [1]`, the AP at IoU 0.5.
- mIoU: per image, greedy one-to-one matching of predicted and ground-truth masks by IoU, the mean of the
  matched IoUs (0 without a match), then the mean over images.
- recall: per image, greedy matching on IoU that stops at the first best pair with IoU < 0.5 or phrase
  similarity < 0.5; GLaMM's similarity is the cosine of mean-pooled `bert-base-uncased` states, computed
  when `--bert_path` (default `pretrained/bert-base-uncased`) holds that model. Without it, recall is
  reported as `recall_word_f1` (word-level F1 as similarity), which is not comparable to published
  numbers, and `recall_note` says so.
- captions: `Bleu_4`, `ROUGE_L`, `CIDEr`, `METEOR`, `SPICE` with pycocoevalcap's scorers; METEOR and SPICE
  need Java (SPICE also Stanford CoreNLP jars, never downloaded here): `caption_skipped` says which were
  skipped and why.
An image whose prediction fails is recorded with its reason and counts as no masks and an empty caption.
Images whose ground-truth masks are all empty or absent are named and counted (`num_empty_gt`,
`num_absent_gt`); when that holds for every image the script stops.

Outputs in `--work_dir`: `results.jsonl`, one line per image: `answer`, `caption`, `phrases`, `masks`
(RLEs, in phrase order), `error`; `metrics.json`: the scores x100 and counts.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import warnings

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))


from projects.desa2va.common.masks import decode_segmentation, encode_rle, segmentation_area  # noqa: E402
from projects.desa2va.datasets.base import open_image, read_json  # noqa: E402
from projects.desa2va.datasets.gcg import GCG_QUESTIONS  # noqa: E402
from projects.desa2va.inference.video import predict  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, audit_ground_truth, init_distributed,  # noqa: E402
                                                load_model, parse_overrides, percent, percents, print_table,
                                                run_and_merge, write_outputs)
from projects.desa2va.evaluation.metrics import (BertSimilarity, caption_metrics, gcg_miou, gcg_recall,  # noqa: E402
                                                 mask_ap50, word_f1)

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
    p.add_argument("--caption_gt_file", default=None, help="default <gt_dir>/<split>_gcg_coco_caption_gt.json")
    p.add_argument("--mask_gt_file", default=None, help="default <gt_dir>/<split>_gcg_coco_mask_gt.json")
    p.add_argument("--image_folder", default="data/glamm_data/images/GranDf_HA_images/val_test")
    p.add_argument("--bert_path", default="pretrained/bert-base-uncased",
                   help="a local bert-base-uncased folder for GLaMM's phrase similarity (recall)")
    p.add_argument("--work_dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    cap_path = a.caption_gt_file or os.path.join(a.gt_dir, f"{a.split}_gcg_coco_caption_gt.json")
    mask_path = a.mask_gt_file or os.path.join(a.gt_dir, f"{a.split}_gcg_coco_mask_gt.json")
    for path in (cap_path, mask_path, a.image_folder, a.model_path):
        if not os.path.exists(path):
            p.error(f"not found: {path}")
    work_dir = a.work_dir or os.path.join("work_dirs", "eval", f"gcg_{a.split}")
    caps, masks = read_json(cap_path), read_json(mask_path)
    images = {str(im["id"]): im for im in caps["images"]}
    keys = sorted(images)[:a.limit]
    gt_captions, gt_labels = {}, {}
    for c in caps["annotations"]:
        gt_captions.setdefault(str(c["image_id"]), []).append(c["caption"])
        gt_labels.setdefault(str(c["image_id"]), c.get("labels"))
    mask_images = {str(im["id"]): im for im in masks["images"]}
    gt_masks = {}
    for ann in masks["annotations"]:
        gt_masks.setdefault(str(ann["image_id"]), []).append(ann)

    def size(key):
        im = mask_images.get(key, images[key])
        return int(im["height"]), int(im["width"])
    audit = audit_ground_truth([(k, [f"annotation {g['id']}" for g in gt_masks.get(k, [])],
                                 any(segmentation_area(g["segmentation"], *size(k)) for g in gt_masks[k])
                                 if k in gt_masks else None) for k in keys], mask_path, what="images")
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(key):
        im = images[key]
        image = open_image(os.path.join(a.image_folder, im["file_name"]), key)
        out = predict(model, "<image>\n" + GCG_QUESTIONS[0], image=image)
        caption, phrases = parse_answer(out["text"])
        return {"answer": out["text"], "caption": caption, "phrases": phrases,
                "masks": [encode_rle(m) for m in out["masks"]]}

    records = run_and_merge(keys, evaluate, work_dir, rank, world, a.resume, f"GCG {a.split}")
    if rank != 0:
        return {}
    per_image, detections = [], []
    for r in records:
        key = r["key"]
        h, w = size(key)
        preds = [decode_segmentation(m, h, w) for m in r.get("masks", [])]
        phrases = r.get("phrases", [])
        per_image.append({"pred": preds, "gt": [decode_segmentation(g["segmentation"], h, w)
                                                for g in gt_masks.get(key, [])],
                          "pred_phrases": phrases[:len(preds)] + [""] * max(0, len(preds) - len(phrases)),
                          "gt_phrases": gt_labels.get(key) or []})
        detections += [{"image_id": images[key]["id"], "category_id": 1, "segmentation": m, "score": 1.0}
                       for m in r.get("masks", [])]
    scored = set(keys)  # --limit: the ground truth of the evaluated images only
    gt_coco = {"images": [im for im in masks["images"] if str(im["id"]) in scored],
               "annotations": [g for g in masks["annotations"] if str(g["image_id"]) in scored],
               "categories": masks.get("categories") or [{"id": 1, "name": "object"}]}
    metrics = {"mask_AP50": percent(mask_ap50(gt_coco, detections)), "mIoU": percent(gcg_miou(per_image)),
               "num_images": len(records), "num_failed": sum(1 for r in records if "error" in r),
               "num_empty_gt": len(audit["empty"]), "empty_gt": audit["empty"],
               "num_absent_gt": len(audit["absent"]), "absent_gt": audit["absent"]}
    if not all(len(im["gt_phrases"]) == len(im["gt"]) for im in per_image):
        metrics["recall_note"] = "skipped: the caption ground truth has no 'labels' for every mask"
    elif os.path.isfile(os.path.join(a.bert_path, "config.json")):
        metrics["recall"] = percent(gcg_recall(per_image, similarity=BertSimilarity(a.bert_path)))
    else:
        metrics["recall_word_f1"] = percent(gcg_recall(per_image, similarity=word_f1))
        metrics["recall_note"] = (f"GLaMM's recall scores phrase similarity with bert-base-uncased, not found at "
                                  f"{a.bert_path} (--bert_path); recall_word_f1 uses word-level F1 instead and is "
                                  "not comparable to published recall")
        warnings.warn(metrics["recall_note"])
    caps_out = caption_metrics({k: gt_captions.get(k, [""]) for k in keys},
                               {r["key"]: r.get("caption", "") for r in records})
    metrics.update(percents(caps_out))
    write_outputs(work_dir, records, metrics)
    print_table(f"GCG {a.split} ({work_dir})", {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))})
    return metrics


if __name__ == "__main__":
    main()
