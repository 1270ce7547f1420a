"""Ref-SAV: long captions on SA-V masklets (`video_datas/sam_v_final_v3.json` + `sam_v_full/`).

`{video_id: {"video_path", "anno_path", "objects": {obj_id: {"formated": long caption,
"short_caps": [...]}}}}`; `anno_path` is SA-V's `<video>_manual.json` whose `masklet` holds, for every
annotated frame, a list of per-object RLEs (object `obj_id` = index in that list). SA-V annotates
every 4th frame of its 24 fps videos: annotated frame k is video frame 4k. Paths are relative to
`video_folder`. `caption='long'` uses the formatted caption, `'short'` a random short one.
"""
from __future__ import annotations

import json
import os
import random

import numpy as np

from ..common.chat_template import media_placeholder
from ..common.masks import decode_segmentation
from .base import GroundingDataset, RawSample, read_json
from .records import PackedRecords
from .template import SampleError, referring_turns
from .video_io import open_video, read_frames

SAV_FRAME_STRIDE = 4


class RefSAVDataset(GroundingDataset):
    kind = "video"
    modality_lengths = {"video": 20000}  # Sa2VA's VideoSAM2Dataset

    def __init__(self, annotation_file: str, video_folder: str, num_frames: int = 5, max_objects: int = 5,
                 caption: str = "long", frame_stride: int = SAV_FRAME_STRIDE, **kwargs):
        super().__init__(**kwargs)
        if caption not in ("long", "short"):
            raise ValueError(f"caption must be 'long' or 'short', got {caption!r}")
        data = read_json(annotation_file)
        self.video_folder, self.num_frames, self.max_objects = video_folder, num_frames, max_objects
        self.caption, self.stride = caption, frame_stride
        self.items = PackedRecords({"vid": str(vid), **v} for vid, v in data.items() if v.get("objects"))

    def num_items(self) -> int:
        return len(self.items)

    def _open(self, index: int):
        """(item, masklet, video reader, video path, annotated indices k whose frame 4k exists)."""
        it = self.items[index]
        sid = it["vid"]
        anno_path = os.path.join(self.video_folder, it["anno_path"])
        if not os.path.isfile(anno_path):
            raise SampleError("missing_file", f"sample {sid}: masklet file not found: {anno_path}")
        try:
            with open(anno_path) as f:
                masklet = json.load(f)["masklet"]
        except Exception as e:
            raise SampleError("corrupt_mask", f"sample {sid}: cannot read masklets {anno_path}: {e}") from e
        video_path = os.path.join(self.video_folder, it["video_path"])
        reader = open_video(video_path, sid)
        usable = [k for k in range(len(masklet)) if k * self.stride < len(reader)]
        if not usable:
            raise SampleError("corrupt_video", f"sample {sid}: {video_path} is shorter than its first annotated frame")
        return it, masklet, reader, video_path, usable

    def _object_masks(self, it, masklet, obj_id, ks, h, w) -> np.ndarray:
        o = int(obj_id)
        out = []
        for k in ks:
            if o >= len(masklet[k]):
                raise SampleError("unknown_annotation", f"sample {it['vid']}: object {obj_id} missing from annotated "
                                                        f"frame {k} of {it['anno_path']}")
            out.append(decode_segmentation(masklet[k][o], h, w))
        return np.stack(out)

    def eval_item(self, index: int):
        """Evaluation view of a video: every annotated frame, and per object its masks (T, H, W), its long
        caption and its first short caption -> (video id, frames, [(obj_id, masks, long, short)])."""
        it, masklet, reader, path, ks = self._open(index)
        frames = read_frames(reader, [k * self.stride for k in ks], path, it["vid"])
        h, w = frames[0].height, frames[0].width
        objs = [(obj_id, self._object_masks(it, masklet, obj_id, ks, h, w), info["formated"],
                 (info.get("short_caps") or [info["formated"]])[0]) for obj_id, info in it["objects"].items()]
        return it["vid"], frames, objs

    def load(self, index: int, rng: random.Random) -> RawSample:
        it, masklet, reader, video_path, usable = self._open(index)
        sid = it["vid"]
        ks = sorted(rng.sample(usable, min(self.num_frames, len(usable))))
        frames = read_frames(reader, [k * self.stride for k in ks], video_path, sid)
        h, w = frames[0].height, frames[0].width
        objs = list(it["objects"].items())
        objs = rng.sample(objs, min(self.max_objects, len(objs)))
        masks, texts = [], []
        for obj_id, info in objs:
            masks.append(self._object_masks(it, masklet, obj_id, ks, h, w))
            texts.append(info["formated"] if self.caption == "long" or not info.get("short_caps")
                         else rng.choice(info["short_caps"]))
        prefix = media_placeholder(len(frames)) + "\n"
        return RawSample(sample_id=sid, kind="video", images=frames, masks=np.stack(masks), object_texts=texts,
                         turns=referring_turns(texts, rng, video=True, image_prefix=prefix))
