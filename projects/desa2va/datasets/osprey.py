"""Osprey-724K region-level instructions (`osprey-724k/`): visual prompts.

Records `{file_name, height, width, annotation: [{segmentation}], conversations}` (conversation,
short-form, part-level and LVIS positive/negative files); the detailed-description file has
`description: ["<regionK>: text", ...]` instead of conversations (`layout='detailed'`).

Region k becomes `region{k} <vp>` + `<IMG_CONTEXT>` x K_k + `</vp>`, K_k = the cells of the image's
token grid its mask covers (`region_token_cells`), listed before the first question ("There are N part
regions in the picture: ..."); later mentions `<regionK>` in the text become plain `regionK`. The image
is a single whole-image tile, so region tokens and visual tokens share one grid.
"""
from __future__ import annotations

import os
import random
import re

import numpy as np

from ..common import special_tokens as st
from ..common.chat_template import region_prefix
from ..common.image_processing import region_token_cells
from ..common.masks import decode_segmentation
from .base import GroundingDataset, RawSample, open_image, read_json
from .records import PackedRecords
from .template import SampleError, pair_turns

REGION_MENTION = re.compile(r"<region(\d+)>")
DETAILED_QUESTIONS = [
    "Can you provide me with a detailed description of the region in the picture marked by {}?",
    "Please describe the region {} in the image in detail.",
    "What can you tell me about the region indicated by {} in the image?",
    "Could you describe the region shown as {} in the picture in great detail?",
]


class OspreyDataset(GroundingDataset):
    kind = "image"

    def __init__(self, data_file: str, image_folder: str, layout: str = "conversation",
                 strip_coco_prefix: bool = True, **kwargs):
        super().__init__(**kwargs)
        if layout not in ("conversation", "detailed"):
            raise ValueError(f"layout must be 'conversation' or 'detailed', got {layout!r}")
        self.image_folder, self.layout, self.strip = image_folder, layout, strip_coco_prefix
        self.items = PackedRecords(read_json(data_file))
        self.grid = int(round(self.geometry.num_image_token ** 0.5))

    def num_items(self) -> int:
        return len(self.items)

    def load(self, index: int, rng: random.Random) -> RawSample:
        r = self.items[index]
        name = r["file_name"]
        sid = str(r.get("id", name))
        if self.strip:  # Osprey's COCO records name "COCO_train2014_000000xxxxxx.jpg" for coco/ images
            name = name.split("_")[-1]
        image = open_image(os.path.join(self.image_folder, name), sid)
        h, w = image.height, image.width
        masks = np.stack([decode_segmentation(a["segmentation"], h, w) for a in r["annotation"]])
        counts = [int(region_token_cells(m, self.grid).sum()) for m in masks]
        for k, n in enumerate(counts):
            if n == 0:
                raise SampleError("empty_region", f"sample {sid}: region {k + 1} has an empty mask")
        prefix = f"{st.IMAGE_PLACEHOLDER}\n" + region_prefix(counts)
        if self.layout == "detailed":
            turns = []
            for k, desc in enumerate(r["description"]):
                text = desc.split(":", 1)[1].strip() if ":" in desc else desc
                turns.append((rng.choice(DETAILED_QUESTIONS).format(f"region{k + 1}"), text))
        else:
            turns = [(REGION_MENTION.sub(r"region\1", q), REGION_MENTION.sub(r"region\1", a))
                     for q, a in pair_turns(r.get("conversations") or [], sid)]
        turns[0] = (prefix + turns[0][0], turns[0][1])
        return RawSample(sample_id=sid, kind="image", images=[image], turns=turns, region_masks=masks)
