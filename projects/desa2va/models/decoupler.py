"""Projections from the LLM's `[SEG]` state h (d) to SAM-2's prompt width (256).

- `Sa2VAProjection`: Sa2VA's single projection, Linear(d, d) -> ReLU -> Linear(d, 256). Its layers are
  `text_hidden_fcs.0` / `text_hidden_fcs.2`, the key names of released Sa2VA checkpoints.
- `Decoupler` (MID): z_txt = W_t h and z_vis = W_v h, each Linear(d, 256) with bias.
- `RealTextProjection`: r = W_rt e(t), Linear(d, 256), embeds the LLM's encoding of a real text label;
  trained in text pre-training, a frozen teacher for the alignment loss in stage 2.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


class Sa2VAProjection(nn.Module):
    def __init__(self, hidden_size: int, out_dim: int = 256):
        super().__init__()
        self.text_hidden_fcs = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=True),
                                             nn.Linear(hidden_size, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(n, d) -> (n, 256)"""
        return self.text_hidden_fcs(h)


class Decoupler(nn.Module):
    """`visual_proj='sa2va_mlp'` makes the visual branch Sa2VA's projection (Linear-ReLU-Linear), so a
    stage 2 started from an imported Sa2VA model keeps Sa2VA's prompt path for D_vis."""

    def __init__(self, hidden_size: int, out_dim: int = 256, visual_proj: str = "linear"):
        super().__init__()
        self.text_proj = nn.Linear(hidden_size, out_dim)    # Linear(Text)
        if visual_proj == "linear":
            self.vision_proj = nn.Linear(hidden_size, out_dim)  # Linear(Vision)
        elif visual_proj == "sa2va_mlp":
            self.vision_proj = Sa2VAProjection(hidden_size, out_dim)
        else:
            raise ValueError(f"visual_proj must be 'linear' or 'sa2va_mlp', got {visual_proj!r}")

    def forward(self, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(n, d) -> z_txt (n, 256), z_vis (n, 256)"""
        return self.text_proj(h), self.vision_proj(h)


class RealTextProjection(nn.Module):
    def __init__(self, hidden_size: int, out_dim: int = 256):
        super().__init__()
        self.proj = nn.Linear(hidden_size, out_dim)  # Linear(Real-Text)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(n, d) -> (n, 256)"""
        return self.proj(e)
