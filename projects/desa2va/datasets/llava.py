"""LLaVA-1.5 instruction data (`llava_v1_5_mix665k.json`), with and without images.

`[{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}]}]`; images relative to
`image_folder`. A sample with an image must have exactly one `<image>` placeholder (one is prepended to
the first question when the text has none); a sample without an image must have none.
"""
from __future__ import annotations

import os
import random

from ..common import special_tokens as st
from .base import GroundingDataset, RawSample, open_image, read_json
from .records import PackedRecords
from .template import SampleError, pair_turns


class LLaVADataset(GroundingDataset):
    def __init__(self, data_file: str, image_folder: str = "", **kwargs):
        super().__init__(**kwargs)
        data = read_json(data_file)
        self.image_folder = image_folder
        self.items = PackedRecords(data)
        self._kinds = bytes(1 if d.get("image") else 0 for d in data)

    def num_items(self) -> int:
        return len(self.items)

    def kind_of(self, index: int) -> str:
        return "image" if self._kinds[index] else "text"

    def load(self, index: int, rng: random.Random) -> RawSample:
        d = self.items[index]
        sid = str(d.get("id", index))
        turns = pair_turns(d.get("conversations") or [], sid)
        n_placeholders = sum(q.count(st.IMAGE_PLACEHOLDER) + a.count(st.IMAGE_PLACEHOLDER) for q, a in turns)
        if d.get("image"):
            if n_placeholders == 0:
                turns[0] = (st.IMAGE_PLACEHOLDER + "\n" + turns[0][0], turns[0][1])
            elif n_placeholders > 1:
                raise SampleError("image_token_mismatch", f"sample {sid}: {n_placeholders} <image> placeholders for one image")
            image = open_image(os.path.join(self.image_folder, d["image"]), sid)
            return RawSample(sample_id=sid, kind="image", images=[image], turns=turns)
        if n_placeholders:
            raise SampleError("image_token_mismatch", f"sample {sid}: <image> placeholder without an image")
        return RawSample(sample_id=sid, kind="text", turns=turns)
