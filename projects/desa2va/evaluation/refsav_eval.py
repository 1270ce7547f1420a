"""Ref-SAV evaluation (`ref_vos_eval.py --dataset REFSAV`): the release's annotation json + SA-V
`_manual.json` masklets, read by `RefSAVDataset`; every object asked with its long and with its short
caption on every annotated frame; J, F, J&F per long / short / overall."""
from __future__ import annotations

import os

import numpy as np

from projects.desa2va.evaluation.common import (audit_ground_truth, init_distributed, load_model, mean_scores,
                                                parse_overrides, print_table, run_and_merge,
                                                video_question as question, write_outputs)
from projects.desa2va.evaluation.metrics import j_and_f
from projects.desa2va.inference.video import predict_video
from projects.desa2va.common.masks import encode_rle

# the release's layout (videos with SA-V masklets and long/short captions)
REFSAV_DEFAULTS = ("data/video_datas/sam_v_full", "data/video_datas/ref_sav_val.json")


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
    ds = RefSAVDataset(annotation_file=ann, video_folder=video_folder, model_path=os.path.join(a.model_path, "mllm"),
                       on_bad_sample="raise")
    index = {ds.items[i]["vid"]: i for i in range(len(ds))}
    videos = sorted(index)[:a.limit]
    rank, world, device = init_distributed()
    model = load_model(a.model_path, device, **parse_overrides(a.override))

    def evaluate(vid):
        _, frames, objs = ds.eval_item(index[vid])
        asks = [(obj_id, kind, text, gt) for obj_id, gt, long, short in objs
                for kind, text in (("long", long), ("short", short))]
        try:
            outs = predict_video(model, [question(t) for _, _, t, _ in asks], frames)
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
            if not gt.any():
                rec["gt_empty"] = True
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
                         "error": v["error"]} for kind in ("long", "short")]
    failed_videos = [v["key"] for v in merged if "expressions" not in v]
    metrics = {"num_expressions": len(records), "num_failed": sum(1 for r in records if "error" in r),
               "failed_videos": len(failed_videos)}
    for kind in ("long", "short", None):
        metrics.update(mean_scores([r for r in records if kind is None or r["caption"] == kind],
                               f"{kind or 'overall'}/", ("J", "F")))
    write_outputs(work_dir, records, metrics)  # kept even when the audit below stops the script
    scored = [r for r in records if "J" in r]
    empty = audit_ground_truth([(r["key"], [f"{r['vid']} object {r['obj_id']}"], not r.get("gt_empty"))
                                for r in scored], f"the SA-V masklets of {ann}")["empty"]
    metrics.update(num_empty_gt=len(empty), empty_gt=empty)
    write_outputs(work_dir, records, metrics)
    print_table(f"REFSAV ({work_dir})", {k: v for k, v in metrics.items() if not isinstance(v, list)})
    return metrics
