"""Region captioning (e.g. RefCOCOg regions): describe a region given as a visual prompt.

    python projects/desa2va/evaluation/region_caption_eval.py --model_path P --annotation_file A.json \\
        --image_folder DIR

`A.json` is COCO-style: `images` (`id`, `file_name`) and `annotations` (`id`, `image_id`, `caption`, and
`segmentation` (polygons or RLE) or `bbox` [x, y, w, h], which becomes a rectangle mask). Each region is
given to the model as `region1 <vp>...</vp>` and its answer is scored against the caption(s) of its
annotation id as GLaMM's / Sa2VA's `metrics_region_cap.py` does (COCOEvalCap): `Bleu_4`, `ROUGE_L`,
`CIDEr`, `METEOR`, `SPICE` with pycocoevalcap's scorers (METEOR and SPICE need Java, SPICE also Stanford
CoreNLP jars that are never downloaded here: `caption_skipped` says which were skipped and why). The
answer is used verbatim: no word is deleted from it (Sa2VA's post-processing deleted every "is").

Outputs in `--work_dir`: `results.jsonl` (`key` = annotation id, `image_id`, `answer`, `reference`,
`error`); `metrics.json`: the caption scores x100, `caption_tokenizer`, `caption_skipped`, counts.
"""
from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import numpy as np  # noqa: E402

from projects.desa2va.common.masks import decode_segmentation  # noqa: E402
from projects.desa2va.datasets.base import open_image, read_json  # noqa: E402
from projects.desa2va.inference.video import predict  # noqa: E402
from projects.desa2va.evaluation.common import (add_override_arg, init_distributed, load_model,  # noqa: E402
                                                parse_overrides, percents, print_table, run_and_merge,
                                                write_outputs)
from projects.desa2va.evaluation.metrics import caption_metrics  # noqa: E402

QUESTION = "<image>\nPlease give me a short description of region1."


def region_mask(ann: dict, h: int, w: int) -> np.ndarray:
    if ann.get("segmentation"):
        return decode_segmentation(ann["segmentation"], h, w)
    x, y, bw, bh = (int(round(v)) for v in ann["bbox"])
    m = np.zeros((h, w), bool)
    m[max(y, 0):y + max(bh, 1), max(x, 0):x + max(bw, 1)] = True
    return m


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True)
    add_override_arg(p)
    p.add_argument("--annotation_file", required=True)
    p.add_argument("--image_folder", required=True)
    p.add_argument("--work_dir", default=os.path.join("work_dirs", "eval", "region_caption"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    a = p.parse_args(argv)
    for path in (a.annotation_file, a.image_folder, a.model_path):
        if not os.path.exists(path):
            p.error(f"not found: {path}")
    data = read_json(a.annotation_file)
    images = {im["id"]: im for im in data["images"]}
    anns = {str(x["id"]): x for x in data["annotations"]}
    keys = sorted(anns)[:a.limit]
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(key):
        ann = anns[key]
        im = images[ann["image_id"]]
        image = open_image(os.path.join(a.image_folder, im["file_name"]), key)
        mask = region_mask(ann, image.height, image.width)
        answer = predict(model, QUESTION, image=image, region_masks=[mask])["text"]
        return {"image_id": ann["image_id"], "answer": answer.replace("<|im_end|>", "").strip(),
                "reference": ann["caption"]}

    records = run_and_merge(keys, evaluate, a.work_dir, rank, world, a.resume, "region captions")
    if rank != 0:
        return {}
    metrics = {"num_regions": len(records), "num_failed": sum(1 for r in records if "error" in r)}
    scores = caption_metrics({r["key"]: [anns[r["key"]]["caption"]] for r in records},
                             {r["key"]: r.get("answer", "") for r in records})
    metrics.update(percents(scores))
    write_outputs(a.work_dir, records, metrics)
    print_table(f"region captions ({a.annotation_file})", {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    return metrics


if __name__ == "__main__":
    main()
