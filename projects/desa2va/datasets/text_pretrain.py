"""Stage-1 view of any segmentation reader: (image or frame, masks, texts) for text pre-training.

Returns the sample schema with only `sam_images` (1, 3, S, S), `masks` (n_obj, 1, H, W) and
`object_texts`; no tokens or MLLM tiles are built. From a video item one random frame is used; objects
whose mask is empty on it are dropped (an item with none left is skipped like any bad sample); a video
reader is set to read one frame per item.
"""
from __future__ import annotations

import torch

from ..common.image_processing import sam2_frames
from .base import GroundingDataset
from .template import SampleError


class TextPretrainView(torch.utils.data.Dataset):
    kind = "image"

    def __init__(self, dataset: GroundingDataset):
        self.dataset = dataset
        if hasattr(dataset, "num_frames"):
            dataset.num_frames = 1  # one frame is used: read only that one

    def __len__(self) -> int:
        return len(self.dataset)

    def kind_of(self, index: int) -> str:
        return "image"

    def modality_length_of(self, index: int) -> int:
        return 100  # one frame: an image to the sampler

    @property
    def skipped(self):
        return self.dataset.skipped

    def _build(self, index: int):
        ds = self.dataset
        raw = ds.load(index, ds.rng_for(index))
        if raw.masks is None or raw.object_texts is None:
            raise SampleError("no_masks", f"sample {raw.sample_id}: no masks/texts for text pre-training")
        t = ds.rng_for(index).randrange(raw.masks.shape[1])
        keep = [k for k in range(raw.masks.shape[0]) if raw.masks[k, t].any()]
        if not keep:
            raise SampleError("empty_masks", f"sample {raw.sample_id}: no object visible on frame {t}")
        return {"input_ids": torch.zeros(0, dtype=torch.long), "labels": torch.zeros(0, dtype=torch.long),
                "pixel_values": None, "num_tiles": 0, "sam_images": sam2_frames([raw.images[t]], ds.sam_size),
                "masks": torch.from_numpy(raw.masks[keep][:, t:t + 1].copy()),
                "object_texts": [raw.object_texts[k] for k in keep], "region_masks": None, "kind": "image",
                "sample_id": raw.sample_id}

    def __getitem__(self, index: int):
        return self.dataset.robust(index, self._build)
