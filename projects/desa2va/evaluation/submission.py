"""Server submissions for the splits without public ground truth (MeViS `valid`, Ref-YouTube-VOS `valid`).

The servers take a zip whose root is `Annotations/`: `Annotations/<video>/<exp_id>/<frame>.png`, one
single-channel PNG with values 0 / 255 at the frame's original size for every frame the expression file
lists, for every expression. The PNGs are written from the merged `results.jsonl` records (their
per-frame RLEs), after every sample has a result, so a resumed run writes exactly the same files as an
uninterrupted one and no half-written file from a killed run survives. Ranks write their share of the
videos in parallel; rank 0 checks that every expected file exists and zips them.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..common.masks import decode_segmentation
from .common import barrier

ROOT = "Annotations"
# (video, expression id, the expression file's frame names, one RLE per frame or None when the expression
# has no masks: its frames could not be read)
Entry = Tuple[str, str, Sequence[str], Optional[List[dict]]]


class SubmissionError(RuntimeError):
    """Some expression has no masks: the archive would be refused, so none is written."""


def write_pngs(folder: str, frames: Sequence[str], rles: Sequence[dict]) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, rle in zip(frames, rles):
        h, w = rle["size"]
        mask = decode_segmentation(rle, h, w)
        Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(folder, f"{name}.png"))


def write_submission(work_dir: str, entries: Sequence[Entry], rank: int = 0, world: int = 1,
                     threads: int = 8) -> Optional[str]:
    """Write `<work_dir>/Annotations/...` (this rank's share of the videos) and, on rank 0,
    `<work_dir>/submission.zip`; returns the zip's path on rank 0 (None elsewhere). Raises
    `SubmissionError` naming the expressions without masks or the missing files."""
    root = os.path.join(work_dir, ROOT)
    if rank == 0 and os.path.isdir(root):
        shutil.rmtree(root)  # files of an earlier run (other expressions, other frames) must not be zipped
    barrier()
    videos = sorted({e[0] for e in entries})[rank::world]
    mine = [e for e in entries if e[0] in set(videos) and e[3] is not None]
    for vid, exp_id, frames, rles in mine:
        if len(rles) != len(frames):
            raise SubmissionError(f"{vid}/{exp_id}: {len(rles)} masks for {len(frames)} frames")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda e: write_pngs(os.path.join(root, e[0], e[1]), e[2], e[3]), mine))
    barrier()
    if rank != 0:
        return None
    no_masks = [f"{v}/{x}" for v, x, _, rles in entries if rles is None]
    if no_masks:
        raise SubmissionError(f"{len(no_masks)} expressions have no masks (their frames could not be read; see "
                              f"results.jsonl): {no_masks[:10]}; no submission.zip was written")
    missing = [os.path.join(v, x, f"{f}.png") for v, x, frames, _ in entries for f in frames
               if not os.path.isfile(os.path.join(root, v, x, f"{f}.png"))]
    if missing:
        raise SubmissionError(f"{len(missing)} PNGs were not written under {root} (first: {missing[:5]})")
    return shutil.make_archive(os.path.join(work_dir, "submission"), "zip", work_dir, ROOT)
