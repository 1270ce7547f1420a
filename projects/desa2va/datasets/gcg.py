"""Grounded conversation generation (GCG): captions whose phrases are segmented.

Layouts (`glamm_data/annotations/`), chosen by `layout=`:
- `grandf` / `openpsg`: records `{file_name, height, width, image_id, caption, groundings: {phrase:
  {token_positives: [s, e], rle_masks: [RLE, ...]}}}` (a list, or a dict of records);
- `flickr`: COCO-style, `images` with `caption`, `annotations` with `image_id`, `tokens_positive`
  ([[s, e], ...]; the first span is used) and `sam_mask` (RLE);
- `refcocog_gcg`: `{id: {img_file_name, caption, refs: [{sentence, bbox, segmentation}]}}`; each
  sentence is located in the caption case-insensitively (not found: that ref is dropped and counted).
A GranD-f / OpenPSG grounding that is `None` or has no mask is dropped and counted (`dropped_phrases`),
as Sa2VA's `grandf_parse_annotations` skips it.

The answer marks each grounded span as `<p> span </p> [SEG]`, spans in caption order (an overlapping
later span is dropped), masks in the same order; a phrase's masks are combined as a boolean union.
"""
from __future__ import annotations

import collections
import os
import random
from typing import List, Tuple

import numpy as np

from ..common import special_tokens as st
from ..common.masks import decode_segmentation, union
from .base import GroundingDataset, RawSample, open_image, read_json
from .records import PackedRecords
from .template import SampleError

GCG_QUESTIONS = [
    "Could you please give me a detailed description of the image? Please respond with interleaved segmentation "
    "masks for the corresponding parts of the answer.",
    "Can you provide a brief description of this image? Please output with interleaved segmentation masks for the "
    "corresponding phrases.",
    "Please describe the image in detail, with interleaved segmentation masks for the phrases you mention.",
]
LAYOUTS = ("grandf", "openpsg", "flickr", "refcocog_gcg")


def grounded_answer(caption: str, spans: List[Tuple[int, int]]) -> str:
    """Insert `<p> ` / ` </p> [SEG]` around each (start, end) span (sorted, non-overlapping)."""
    out, last = [], 0
    for s, e in spans:
        out += [caption[last:s], f"{st.PHRASE_START} {caption[s:e]} {st.PHRASE_END} {st.SEG}"]
        last = e
    out.append(caption[last:])
    return "".join(out)


class GCGDataset(GroundingDataset):
    kind = "image"

    def __init__(self, annotation_file: str, image_folder: str, layout: str = "grandf", **kwargs):
        super().__init__(**kwargs)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        data = read_json(annotation_file)
        self.image_folder = image_folder
        self.dropped_phrases = 0
        self.items = PackedRecords(getattr(self, f"_index_{'grandf' if layout == 'openpsg' else layout}")(data))

    # -- each layout -> records {id, file_name, caption, phrases: [(start, end, [segmentations])]}
    def _index_grandf(self, data):
        records = data.values() if isinstance(data, dict) else data
        for r in records:
            phrases = []
            for g in (r.get("groundings") or {}).values():
                masks = [m for m in (g or {}).get("rle_masks") or [] if m is not None]
                if not masks:  # a grounding without a mask (None): the reference skips it
                    self.dropped_phrases += 1
                    continue
                phrases.append((int(g["token_positives"][0]), int(g["token_positives"][1]), masks))
            yield {"id": str(r.get("image_id", r["file_name"])), "file_name": r["file_name"], "caption": r["caption"],
                   "phrases": phrases}

    @staticmethod
    def _index_flickr(data):
        by_image = collections.defaultdict(list)
        for a in data["annotations"]:
            s, e = a["tokens_positive"][0]
            by_image[a["image_id"]].append((int(s), int(e), [a["sam_mask"]]))
        for im in data["images"]:
            yield {"id": str(im["id"]), "file_name": im["file_name"], "caption": im["caption"],
                   "phrases": by_image.get(im["id"], [])}

    def _index_refcocog_gcg(self, data):
        for key, r in data.items():
            caption, low, phrases = r["caption"], r["caption"].lower(), []
            for ref in r["refs"]:
                s = low.find(ref["sentence"].lower())
                if s < 0:
                    self.dropped_phrases += 1
                    continue
                phrases.append((s, s + len(ref["sentence"]), [ref["segmentation"]]))
            yield {"id": str(key), "file_name": r["img_file_name"], "caption": caption, "phrases": phrases}

    def num_items(self) -> int:
        return len(self.items)

    def load(self, index: int, rng: random.Random) -> RawSample:
        r = self.items[index]
        sid = r["id"]
        image = open_image(os.path.join(self.image_folder, r["file_name"]), sid)
        h, w = image.height, image.width
        spans, masks, last_end = [], [], -1
        for s, e, segs in sorted(r["phrases"], key=lambda p: (p[0], p[1])):
            if not 0 <= s < e <= len(r["caption"]):
                raise SampleError("bad_span", f"sample {sid}: span [{s}, {e}) outside the caption")
            if s < last_end:
                continue  # overlaps the previous span
            spans.append((s, e))
            masks.append(union((decode_segmentation(g, h, w) for g in segs), h, w))
            last_end = e
        question = st.IMAGE_PLACEHOLDER + "\n" + rng.choice(GCG_QUESTIONS)
        texts = [r["caption"][s:e] for s, e in spans]
        return RawSample(sample_id=sid, kind="image", images=[image],
                         turns=[(question, grounded_answer(r["caption"], spans))],
                         masks=np.stack(masks)[:, None] if masks else None, object_texts=texts or None)
