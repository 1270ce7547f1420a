"""Video decoding with decord (mp4 and the other formats it reads), and frame index sampling."""
from __future__ import annotations

import os
import random
from typing import List, Optional, Sequence

import numpy as np
from PIL import Image

from .template import SampleError


def open_video(path: str, sample_id: str):
    if not os.path.isfile(path):
        raise SampleError("missing_file", f"sample {sample_id}: video not found: {path}")
    try:
        import decord

        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as e:
        raise SampleError("corrupt_video", f"sample {sample_id}: cannot read video {path}: {e}") from e
    if len(reader) == 0:
        raise SampleError("empty_video", f"sample {sample_id}: video has no frames: {path}")
    return reader


def read_frames(reader, indices: Sequence[int], path: str, sample_id: str) -> List[Image.Image]:
    """RGB frames at `indices` (decoded in one batch)."""
    n = len(reader)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise SampleError("corrupt_video", f"sample {sample_id}: frames {bad[:5]} outside {path} ({n} frames)")
    try:
        arr = reader.get_batch(list(indices)).asnumpy()
    except Exception as e:
        raise SampleError("corrupt_video", f"sample {sample_id}: cannot decode frames of {path}: {e}") from e
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


def segment_indices(num_total: int, num_frames: int, rng: Optional[random.Random] = None) -> List[int]:
    """One frame per each of `num_frames` equal segments (random within the segment when `rng` is given,
    else its middle). Always `num_frames` indices: a shorter video repeats frames."""
    if num_total < 1:
        raise ValueError("a video needs at least one frame")
    edges = np.linspace(0, num_total, num_frames + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        x = rng.uniform(a, b) if rng is not None else (a + b) / 2
        out.append(min(int(x), num_total - 1))
    return out
