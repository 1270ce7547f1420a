"""MeViS and ReVOS referring video segmentation (expression json + `mask_dict.json`).

`meta_expressions*.json` = {"videos": {vid: {"frames": [frame ids], "expressions": {exp_id: {"exp": str,
"anno_id": [...], "obj_id": [...]}}}}} (ReVOS adds `type_id`: 0 referring, 1 reasoning, 2 no target,
and height/width); `mask_dict.json` = {anno_id: [per-frame COCO RLE or null]}. Frames are
`<frames_dir>/<vid>/<frame>.jpg` (MeViS: `JPEGImages/`; ReVOS: the dataset root). A video's `frames` are
sorted by name, as every official reader does, and the t-th entry of an anno_id's mask list belongs to
the t-th sorted frame (the official evaluation pairs them by index). An expression's mask on a frame is
the boolean union of its anno_ids' masks.

- `mode='train'`: one item per video; `num_frames` sorted random frames and up to `max_objects` random
  expressions, one question/answer turn each.
- `mode='eval'`: one item per (video, expression), every frame; `load_frames=False` skips decoding.
"""
from __future__ import annotations

import os
import random
from typing import Dict, List, Optional

import numpy as np

from ..common.chat_template import media_placeholder
from ..common.masks import decode_segmentation, segmentation_area, union
from .base import GroundingDataset, RawSample, open_image, read_json, read_pickle
from .records import PackedRecords
from .template import SampleError, referring_turns


def read_mask_file(path: str) -> Dict[str, list]:
    """`mask_dict.json` (MeViS, ReVOS) or `mask_dict.pkl` (Ref-YouTube-VOS): {anno_id: [RLE | None per frame]}."""
    if path.endswith(".pkl"):
        return {str(k): v for k, v in read_pickle(path).items()}
    return read_json(path)


class RefVOSDataset(GroundingDataset):
    """MeViS / ReVOS layout. `mask_file=None` for splits without ground truth (MeViS valid)."""

    kind = "video"

    def __init__(self, data_root: str, expression_file: str = "meta_expressions.json",
                 mask_file: Optional[str] = "mask_dict.json", frames_dir: str = "JPEGImages", mode: str = "train",
                 num_frames: int = 5, max_objects: int = 5, skip_no_target: bool = True, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if mode == "train" and not mask_file:
            raise ValueError("training needs a mask file (mask_file=None is for splits without ground truth)")
        self.frames_root = os.path.join(data_root, frames_dir)
        self.mode, self.num_frames, self.max_objects = mode, num_frames, max_objects
        videos = self.expression_annotations(read_json(os.path.join(data_root, expression_file))["videos"])
        masks: Dict[str, list] = read_mask_file(os.path.join(data_root, mask_file)) if mask_file else {}
        self.has_masks = bool(mask_file)
        anno_ids = sorted({str(a) for v in videos.values() for e in v["expressions"].values() for a in e.get("anno_id", [])})
        self.anno_index = {a: i for i, a in enumerate(anno_ids)}
        self.annos = PackedRecords(masks.get(a) for a in anno_ids)  # None for ids absent from the mask file
        del masks
        items = []
        for vid, v in videos.items():
            exps = []
            # evaluation: ids sorted as strings, as the official readers do (training draws them at random)
            for exp_id, e in (sorted(v["expressions"].items()) if mode == "eval" else v["expressions"].items()):
                type_id = int(e.get("type_id", 0))
                if mode == "train" and skip_no_target and type_id == 2:
                    continue
                exps.append({"exp_id": str(exp_id), "exp": e["exp"], "anno_id": [str(a) for a in e.get("anno_id", [])],
                             "type_id": type_id})
            if not exps:
                continue
            base = {"vid": vid, "frames": sorted(v["frames"]), "height": v.get("height"), "width": v.get("width")}
            if mode == "train":
                items.append(dict(base, expressions=exps))
            else:
                items += [dict(base, expressions=[e]) for e in exps]
        self.items = PackedRecords(items)

    def expression_annotations(self, videos: dict) -> dict:
        """Hook: MeViS/ReVOS expressions name their anno_ids; other layouts assign them here."""
        return videos

    def num_items(self) -> int:
        return len(self.items)

    def item_info(self, index: int) -> dict:
        return self.items[index]

    def frame_size(self, item: dict):
        """(H, W) without reading a frame: the json's height/width (ReVOS) or the size of a stored RLE."""
        if item.get("height") and item.get("width"):
            return int(item["height"]), int(item["width"])
        for e in item["expressions"]:
            for a in e["anno_id"]:
                for rle in self.annos[self.anno_index[a]] or []:
                    if rle is not None:
                        return int(rle["size"][0]), int(rle["size"][1])
        return None, None

    def has_target(self, item: dict, exp: dict) -> Optional[bool]:
        """From the stored RLEs alone (nothing decoded): True when the expression's ground truth covers a
        pixel on some frame, False when it is empty on every frame, None when one of its keys is absent
        from the mask file."""
        h, w = self.frame_size(item)
        for a in exp["anno_id"]:
            rles = self.annos[self.anno_index[a]]
            if rles is None:
                return None
            if any(segmentation_area(r, h, w) for r in rles if r is not None):
                return True
        return False

    def frame_path(self, vid: str, frame: str) -> str:
        return os.path.join(self.frames_root, vid, f"{frame}.jpg")

    def expression_masks(self, item: dict, exp: dict, frame_idx: List[int], height: int, width: int) -> np.ndarray:
        """(T, H, W) union of the expression's anno_ids on the chosen frames."""
        sid = f"{item['vid']}/{exp['exp_id']}"
        per_anno = []
        for a in exp["anno_id"]:
            rles = self.annos[self.anno_index[a]]
            if rles is None:
                raise SampleError("unknown_annotation", f"sample {sid}: anno_id {a} not in the mask file")
            if len(rles) != len(item["frames"]):
                raise SampleError("corrupt_mask", f"sample {sid}: anno_id {a} has {len(rles)} frame masks for "
                                                  f"{len(item['frames'])} frames")
            per_anno.append(rles)
        out = np.zeros((len(frame_idx), height, width), bool)
        for t, f in enumerate(frame_idx):
            out[t] = union((None if r[f] is None else decode_segmentation(r[f], height, width) for r in per_anno),
                           height, width)
        return out

    def load(self, index: int, rng: random.Random, load_frames: bool = True) -> RawSample:
        item = self.items[index]
        n = len(item["frames"])
        if n == 0:
            raise SampleError("empty_video", f"sample {item['vid']}: the expression file lists no frames")
        if self.mode == "train":
            frame_idx = sorted(rng.sample(range(n), min(self.num_frames, n)))
            exps = item["expressions"]
            exps = rng.sample(exps, min(self.max_objects, len(exps)))
            sid = item["vid"]
        else:
            frame_idx = list(range(n))
            exps = item["expressions"]
            sid = f"{item['vid']}/{exps[0]['exp_id']}"
        frames = [open_image(self.frame_path(item["vid"], item["frames"][f]), sid) for f in frame_idx] \
            if load_frames else []
        h = frames[0].height if frames else item["height"]
        w = frames[0].width if frames else item["width"]
        masks = None
        if self.has_masks:
            masks = np.stack([self.expression_masks(item, e, frame_idx, h, w) for e in exps])
        phrases = [e["exp"] for e in exps]
        prefix = media_placeholder(len(frame_idx)) + "\n"
        return RawSample(sample_id=sid, kind="video", images=frames, masks=masks, object_texts=phrases,
                         turns=referring_turns(phrases, rng, video=True, image_prefix=prefix))
