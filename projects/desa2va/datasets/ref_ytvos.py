"""Readers whose masks are keyed by a running counter over expressions instead of anno_ids.

- Ref-YouTube-VOS (`video_datas/rvos/`, `mask_dict.pkl`): videos in the expression file's order.
- DAVIS17 (`video_datas/davis17/valid/mask_dict.pkl`): videos in sorted name order (Sa2VA's
  `tools/eval/eval_davis.py`); the expression file's own ids (`obj_id`, any `anno_id`) are not the keys.

In both, each video's expression ids are sorted as strings and take one counter value each; the counter
value, as a string, is the expression's only key into the mask file.
"""
from __future__ import annotations

from .mevis_revos import RefVOSDataset


class RefYTVOSDataset(RefVOSDataset):
    video_order = "json"

    def __init__(self, data_root: str, expression_file: str = "meta_expressions.json",
                 mask_file: str = "mask_dict.pkl", **kwargs):
        super().__init__(data_root=data_root, expression_file=expression_file, mask_file=mask_file, **kwargs)

    def expression_annotations(self, videos: dict) -> dict:
        counter = 0
        out = {}
        for vid in (sorted(videos) if self.video_order == "sorted" else videos):
            v = videos[vid]
            exps = {}
            for exp_id in sorted(v["expressions"]):
                exps[exp_id] = dict(v["expressions"][exp_id], anno_id=[str(counter)])
                counter += 1
            out[vid] = dict(v, expressions=exps)
        return out


class DAVIS17Dataset(RefYTVOSDataset):
    video_order = "sorted"
