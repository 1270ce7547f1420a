"""Text-derived prompts (METHOD.md 3.1): points inside a mask, the stage-1 prompt tokens, e(t).

- `mask_peak_points(masks)`: the distance-transform maximum of each mask (also the reprompt point, 3.3);
- `sample_positive_points(mask, k)`: K points in a mask, its peak first, then uniform picks;
- `text_prompt_tokens(prompt_encoder, r, points, drop, k)`: PE(p_k) + r for K points (SAM-2's
  not-a-point embedding where points are dropped or missing), then r alone -> (N, K+1, 256);
- `RealTextEncoder`: e(t), the frozen LLM (LoRA adapters off) on the label text alone, mean-pooled over
  its tokens, cached per text (LRU, `text_cache_size` texts).
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch


def mask_peak_points(masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Distance-transform maximum of each mask (N, h, w) bool -> (x, y) (N, 2) in mask pixels, and
    valid (N,) False for empty masks."""
    pts, valid = torch.zeros(masks.shape[0], 2), torch.zeros(masks.shape[0], dtype=torch.bool)
    for i, m in enumerate(masks.cpu().numpy().astype(np.uint8)):
        if m.any():
            dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
            y, x = np.unravel_index(int(dist.argmax()), dist.shape)
            pts[i] = torch.tensor([x, y], dtype=torch.float32)
            valid[i] = True
    return pts, valid


def sample_positive_points(mask: torch.Tensor, k: int, generator: Optional[torch.Generator] = None
                           ) -> Optional[torch.Tensor]:
    """K points (x, y) in mask pixels inside mask (h, w): its distance-transform peak, then uniform
    picks among its pixels. None for an empty mask."""
    peak, valid = mask_peak_points(mask[None])
    if not valid[0]:
        return None
    ys, xs = torch.nonzero(mask.cpu(), as_tuple=True)
    idx = torch.randint(len(xs), (k - 1,), generator=generator)
    rest = torch.stack([xs[idx], ys[idx]], dim=1).float()
    return torch.cat([peak, rest], dim=0)


def text_prompt_tokens(prompt_encoder, r: torch.Tensor, points: Optional[torch.Tensor], drop: Optional[torch.Tensor],
                       num_points: int) -> torch.Tensor:
    """Stage-1 prompt tokens (N, K+1, 256) for text embeddings r (N, 256): PE(p_k) + r for K points
    (points (N, K, 2) in SAM input pixels; SAM-2's not-a-point embedding where `drop` (N,) is set or
    points is None), then r alone. Stage 2 decodes z_txt with points=None: the layout of dropped points."""
    n, k = r.shape[0], num_points
    pad = prompt_encoder.not_a_point_embed.weight.reshape(1, 1, -1).expand(n, k, -1)
    if points is None:
        pt = pad
    else:
        pos = prompt_encoder.pe_layer.forward_with_coords(points + 0.5, prompt_encoder.input_image_size)
        pt = torch.where(drop[:, None, None], pad, pos + r[:, None])
    return torch.cat([pt, r[:, None]], dim=1)


class RealTextEncoder:
    """e(t) (n, d) for label texts, cached per text on CPU in float32, least recently used first out, at most
    `max_entries` texts (4 d bytes each: 4096 texts are 15 MB at d = 896 (1B), 42 MB at d = 2560 (4B)).
    Not a module: it owns no weights."""

    def __init__(self, max_entries: int = 4096):
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"text_cache_size must be a positive int, got {max_entries!r}")
        self.max_entries = max_entries
        self.cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    @torch.no_grad()
    def __call__(self, mllm, texts: Sequence[str], device: torch.device) -> torch.Tensor:
        if len(set(texts)) > self.max_entries:
            raise ValueError(f"{len(set(texts))} distinct texts in one call but text_cache_size is {self.max_entries}")
        for t in texts:
            if t in self.cache:
                self.cache.move_to_end(t)
        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            tok = mllm.tokenizer
            enc = [tok(t, add_special_tokens=False).input_ids or [tok.pad_token_id] for t in todo]
            length = max(len(e) for e in enc)
            ids = torch.full((len(enc), length), tok.pad_token_id, dtype=torch.long)
            att = torch.zeros(len(enc), length, dtype=torch.long)
            for i, e in enumerate(enc):
                ids[i, :len(e)], att[i, :len(e)] = torch.tensor(e), 1
            ids, att = ids.to(device), att.to(device)
            lm = mllm.language_model
            off = lm.disable_adapter() if hasattr(lm, "disable_adapter") else contextlib.nullcontext()
            with off:
                h = mllm.causal_lm.model(input_ids=ids, attention_mask=att, use_cache=False).last_hidden_state
            mean = (h.float() * att[..., None]).sum(1) / att.sum(1, keepdim=True)
            for t, e in zip(todo, mean):
                self.cache[t] = e.cpu()
            while len(self.cache) > self.max_entries:
                self.cache.popitem(last=False)
        return torch.stack([self.cache[t] for t in texts]).to(device)
