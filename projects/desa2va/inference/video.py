"""Video inference (METHOD.md 3.3, 3.5): key frames -> MLLM -> decoder outputs on the key frames -> SAM-2 memory.

- `keyframe_indices(n, strategy, count)`: `uniform` (the centre of each of `count` equal segments) or
  `first` (Sa2VA's);
- `predict_video(model, questions, frames)`: the key frames preprocessed once, their SAM-2 features
  computed once (and reused by the video state), every object of every answer tracked in one SAM-2 state;
- `predict(model, question, image=... | frames=...)`: one question about an image or a video.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..common.image_processing import mllm_inputs, to_pil
from .image import generate_answer, geometry, predict_image


def keyframe_indices(num_frames: int, strategy: str = "uniform", count: int = 5) -> List[int]:
    """`uniform`: the centre frame of each of `count` equal segments of the video (never the fade-in at
    frame 0 by construction); `first`: the first `count` frames (Sa2VA's choice)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    count = min(count, num_frames)
    if strategy == "first":
        return list(range(count))
    if strategy == "uniform":
        return [int((i + 0.5) * num_frames / count) for i in range(count)]
    raise ValueError(f"keyframes must be 'uniform' or 'first', got {strategy!r}")


class FramesWithKeys(Sequence):
    """A video's frames as PIL images, read on access, with its key frames already read (kept)."""

    def __init__(self, frames: Sequence, key_frames: Dict[int, Any]):
        self.frames, self.key_frames = frames, key_frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int):
        return self.key_frames[i] if i in self.key_frames else to_pil(self.frames[i])


@torch.no_grad()
def predict_video(model, questions: Sequence[str], frames: Sequence, history=()) -> List[Dict[str, Any]]:
    """Several questions on one video. `frames`: any sequence of PIL images or (H, W, 3) uint8 arrays,
    read on access (key frames once, the others once by the propagation), e.g. the lazily decoded
    `inference.media.VideoFrames`. Returns one {'text', 'masks': [(T, H, W) bool per [SEG]]} per question."""
    keys = keyframe_indices(len(frames), model.keyframes, model.num_keyframes)
    key_frames = {i: to_pil(frames[i]) for i in keys}  # read once: MLLM tiles, SAM-2 features, video state
    frames = FramesWithKeys(frames, key_frames)
    with model.autocast():
        tiles, tokens = mllm_inputs(geometry(model), [key_frames[i] for i in keys], "video")
        gens = [generate_answer(model, q, tiles, tokens, history) for q in questions]
        results = [{"text": g.text, "masks": []} for g in gens]
        owners = [q for q, g in enumerate(gens) for _ in range(g.seg_hidden.shape[0])]
        if not owners:
            return results
        sam_images = model.grounding.preprocess([key_frames[i] for i in keys])
        feats = model.encode(sam_images)
        n, k = len(owners), len(keys)
        h = torch.cat([g.seg_hidden for g in gens]).float()
        obj = torch.arange(n, device=model.device).repeat_interleave(k)
        fidx = torch.arange(k, device=model.device).repeat(n)
        decoded = model.decode_objects_full(feats, h[obj], fidx)
        # each key frame's decoder output (logits, mask token, object score) seeds SAM-2's memory (METHOD.md 3.5)
        key_outputs = {j: {keys[i]: _row(decoded, j * k + i) for i in range(k)} for j in range(n)}
        first = key_frames[keys[0]]
        # the key frames' features serve the video state too (each frame encoded once in all)
        video = model.grounding.propagate(frames, (first.height, first.width), key_outputs,
                                          model.grounding.video_features(feats, sam_images, keys), model.postprocess)
    for j, q in enumerate(owners):
        results[q]["masks"].append(video[j].numpy())
    return results


def _row(decoded, r: int):
    """Row r of a DecoderOutput, as a one-row DecoderOutput."""
    return dataclasses.replace(decoded, **{f.name: getattr(decoded, f.name)[r:r + 1]
                                           for f in dataclasses.fields(decoded)})


def predict(model, question: str, image=None, frames: Optional[Sequence] = None, history=(),
            region_masks: Optional[Sequence[np.ndarray]] = None) -> Dict[str, Any]:
    """Answer `question` about an image or a video and segment every `[SEG]` of the answer.

    image (PIL or (H, W, 3) uint8) -> masks: list of (H, W) bool arrays, one per [SEG];
    region_masks ((H, W) bool each, image only): visual prompts (region1, region2, ... in the question);
    frames (list of images) -> key frames through the MLLM, masks on key frames seed SAM-2 memory,
    propagated over all frames -> masks: list of (T, H, W) bool arrays. No [SEG]: masks = [].
    """
    if (image is None) == (frames is None):
        raise ValueError("predict takes exactly one of image= or frames=")
    if image is not None:
        return predict_image(model, [question], image, history, region_masks)[0]
    if region_masks is not None:
        raise ValueError("region_masks are supported for images only")
    return predict_video(model, [question], frames, history)[0]
