"""Ref-YouTube-VOS (`video_datas/rvos/`): the MeViS expression layout without anno_ids, and masks in
`mask_dict.pkl` keyed by a running counter: videos in json order, each video's expression ids sorted
(as strings), one counter value per expression. Frames are sorted by name."""
from __future__ import annotations

from .mevis_revos import RefVOSDataset


class RefYTVOSDataset(RefVOSDataset):
    def __init__(self, data_root: str, expression_file: str = "meta_expressions.json",
                 mask_file: str = "mask_dict.pkl", **kwargs):
        super().__init__(data_root=data_root, expression_file=expression_file, mask_file=mask_file, **kwargs)

    def expression_annotations(self, videos: dict) -> dict:
        counter = 0
        out = {}
        for vid, v in videos.items():
            exps = {}
            for exp_id in sorted(v["expressions"]):
                e = dict(v["expressions"][exp_id])
                e["anno_id"] = [str(counter)]
                counter += 1
                exps[exp_id] = e
            out[vid] = dict(v, frames=sorted(v["frames"]), expressions=exps)
        return out
