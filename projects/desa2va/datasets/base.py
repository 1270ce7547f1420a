"""The sample schema every reader returns, and the machinery they share.

A reader implements `num_items()` and `load(i) -> RawSample` (files -> images/frames, conversation turns
with `<image>` placeholders, boolean masks). `GroundingDataset.__getitem__` turns it into the sample:

    input_ids (L,) long, labels (L,) long      ChatML conversation, labels on answers only
    pixel_values (n_tiles, 3, s, s) | None      MLLM tiles (image: dynamic tiles + thumbnail; video: 1/frame)
    num_tiles int
    sam_images (T, 3, S, S) | None              SAM-2 frames (S = 1024 for real SAM-2)
    masks (n_obj, T, H, W) bool | None          object k <-> the k-th [SEG] of the conversation
    object_texts [n_obj] str | None             what names each object (text pre-training, alignment)
    region_masks (n_vp, H, W) bool | None       visual prompts: region k's `<vp> <IMG_CONTEXT> x K_k </vp>`
                                                block takes the features of the K_k token-grid cells it covers
                                                on the image's single tile
    kind 'image' | 'video' | 'text';  sample_id str

Bad input: a missing or unreadable file, a corrupt mask, an unknown annotation id, a `[SEG]`/mask count
mismatch or a sample over `max_length` raises `SampleError`. With `on_bad_sample='skip'` (training) it is
logged with the sample id, counted in `self.skipped[reason]` and returned as a `skipped_sample` marker,
never replaced by another sample (that would oversample it): `collate` drops markers from the batch and
lists them in `batch['skipped']`, and the model logs them and trains on the rest (a batch of markers
only is a step of zero gradients, so distributed ranks stay in step). With `'raise'` the error
propagates (evaluation never substitutes samples).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import pickle
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from ..common.chat_template import INTERNVL2_5_SYSTEM
from ..common.image_processing import mllm_inputs, sam2_frames
from ..common.internvl_config import ImageGeometry, read_internvl_config
from ..common.masks import MaskDecodeError
from ..common.tokenizer import load_tokenizer
from .template import ConversationEncoder, SampleError

logger = logging.getLogger("desa2va.datasets")


@dataclass
class RawSample:
    sample_id: str
    kind: str
    turns: List[Tuple[str, str]]
    images: List[Image.Image] = field(default_factory=list)   # 1 for an image, T frames for a video
    masks: Optional[np.ndarray] = None                         # (n_obj, T, H, W) bool
    object_texts: Optional[List[str]] = None
    region_masks: Optional[np.ndarray] = None


def read_json(path: str):
    """An annotation file; a missing or unparsable file is an error naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except Exception as e:
        raise ValueError(f"cannot parse annotation file {path}: {e}") from e


def read_pickle(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:
        raise ValueError(f"cannot read annotation pickle {path}: {e}") from e


def open_image(path: str, sample_id: str) -> Image.Image:
    if not os.path.isfile(path):
        raise SampleError("missing_file", f"sample {sample_id}: image not found: {path}")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:
        raise SampleError("corrupt_image", f"sample {sample_id}: cannot read image {path}: {e}") from e


class GroundingDataset(torch.utils.data.Dataset):
    """Base class of the readers. `model_path` is the InternVL2.5 folder whose tokenizer and image
    geometry the samples are built for; `sam_size` the SAM-2 input size."""

    kind = "image"

    def __init__(self, model_path: str, sam_size: int = 1024, max_length: int = 8192,
                 system: Optional[str] = INTERNVL2_5_SYSTEM, on_bad_sample: str = "skip", seed: int = 0,
                 chat_template: str = "internvl2_5"):
        if on_bad_sample not in ("skip", "raise"):
            raise ValueError(f"on_bad_sample must be 'skip' or 'raise', got {on_bad_sample!r}")
        self.model_path = model_path
        self.tokenizer = load_tokenizer(model_path)
        self.geometry = ImageGeometry.from_config(read_internvl_config(model_path))
        self.encoder = ConversationEncoder(self.tokenizer, max_length=max_length, system=system, template=chat_template)
        self.sam_size = sam_size
        self.on_bad_sample = on_bad_sample
        self.seed = seed
        self.skipped: collections.Counter = collections.Counter()
        self._rng = random.Random(seed)

    # -- to implement
    def num_items(self) -> int:
        raise NotImplementedError

    def load(self, index: int, rng: random.Random) -> RawSample:
        raise NotImplementedError

    def kind_of(self, index: int) -> str:
        """Sample kind without loading it (the sampler groups by it)."""
        return self.kind

    # Sa2VA's `modality_length` (what xtuner's LengthGroupedSampler groups by): not a token count but a
    # per-reader constant, 100 for images (and text), 10000 for videos, 20000 for Ref-SAV.
    modality_lengths = {"image": 100, "text": 100, "video": 10000}

    def modality_length_of(self, index: int) -> int:
        return self.modality_lengths[self.kind_of(index)]

    # -- shared
    def __len__(self) -> int:
        return self.num_items()

    def rng_for(self, index: int) -> random.Random:
        """Per-item randomness that differs between epochs and workers but is reproducible per seed."""
        return random.Random(hash((self.seed, index, self._rng.random())))

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return self.robust(index, lambda i: self.build(self.load(i, self.rng_for(i))))

    def robust(self, index: int, fn):
        """`fn(index)`, or with `on_bad_sample='skip'` a `skipped_sample` marker when the item is bad."""
        try:
            return fn(index)
        except (SampleError, MaskDecodeError) as e:
            reason = getattr(e, "reason", "corrupt_mask")
            if self.on_bad_sample == "raise":
                raise
            self.skipped[reason] += 1
            logger.warning("%s: skipped item %d (%s): %s", type(self).__name__, index, reason, e)
            return skipped_sample(f"{type(self).__name__}[{index}]", reason, str(e))

    def build(self, raw: RawSample) -> Dict[str, Any]:
        g = self.geometry
        n_obj = 0 if raw.masks is None else int(raw.masks.shape[0])
        if raw.object_texts is not None and len(raw.object_texts) != n_obj:
            raise SampleError("text_mask_mismatch", f"sample {raw.sample_id}: {len(raw.object_texts)} texts "
                                                    f"for {n_obj} masks")
        pixel_values = sam_images = None
        tokens: List[int] = []
        if raw.kind in ("image", "video"):
            pixel_values, tokens = mllm_inputs(g, raw.images, raw.kind, regions=raw.region_masks is not None)
        elif raw.kind != "text":
            raise ValueError(f"unknown sample kind {raw.kind!r}")
        ids, labels = self.encoder.encode(raw.turns, tokens, num_masks=n_obj, sample_id=raw.sample_id)
        if n_obj:
            sam_images = sam2_frames(raw.images, self.sam_size)
            if raw.masks.shape[1] != len(raw.images):
                raise SampleError("frame_mismatch", f"sample {raw.sample_id}: masks for {raw.masks.shape[1]} "
                                                    f"frame(s), {len(raw.images)} image(s)")
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long),
            "pixel_values": pixel_values, "num_tiles": 0 if pixel_values is None else int(pixel_values.shape[0]),
            "sam_images": sam_images,
            "masks": None if not n_obj else torch.from_numpy(np.ascontiguousarray(raw.masks, dtype=bool)),
            "object_texts": raw.object_texts if n_obj else None,
            "region_masks": None if raw.region_masks is None else torch.from_numpy(raw.region_masks.astype(bool)),
            "kind": raw.kind, "sample_id": raw.sample_id,
        }


def skipped_sample(item: str, reason: str, message: str) -> Dict[str, Any]:
    """What a dataset returns in place of a bad item in training (`GroundingDataset.robust`)."""
    return {"skipped": {"item": item, "reason": reason, "message": message}}


def collate(samples: Sequence[Dict[str, Any]], pad_token_id: int = 0) -> Dict[str, Any]:
    """Pad tokens (right), concatenate tiles, keep objects and frames as per-sample lists; drop the
    `skipped_sample` markers and list them in `batch['skipped']` (a batch of markers only has no samples).

    Returns xtuner's layout, `{'data': batch, 'data_samples': None}`, which mmengine passes to
    `DeSa2VAModel.forward(data, data_samples, mode)`."""
    skipped = [s["skipped"] for s in samples if "skipped" in s]
    samples = [s for s in samples if "skipped" not in s]
    if not samples:
        return {"data": {"sample_ids": [], "skipped": skipped}, "data_samples": None}
    length = max(s["input_ids"].shape[0] for s in samples)
    n = len(samples)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    labels = torch.full((n, length), -100, dtype=torch.long)
    attention_mask = torch.zeros(n, length, dtype=torch.long)
    for i, s in enumerate(samples):
        k = s["input_ids"].shape[0]
        input_ids[i, :k], labels[i, :k], attention_mask[i, :k] = s["input_ids"], s["labels"], 1
    tiles = [s["pixel_values"] for s in samples if s["pixel_values"] is not None]
    batch = {
        "input_ids": input_ids, "labels": labels, "attention_mask": attention_mask,
        "pixel_values": torch.cat(tiles) if tiles else None, "num_tiles": [s["num_tiles"] for s in samples],
        "sam_images": [s["sam_images"] for s in samples], "masks": [s["masks"] for s in samples],
        "object_texts": [s["object_texts"] for s in samples], "region_masks": [s["region_masks"] for s in samples],
        "kind": [s["kind"] for s in samples], "sample_ids": [s["sample_id"] for s in samples],
        "skipped": skipped,
    }
    return {"data": batch, "data_samples": None}
