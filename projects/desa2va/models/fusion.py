"""Dynamic mask fusion of the text-decoder and visual-decoder logits (METHOD.md 3.2).

Inputs per object: M_t, M_v (N, 1, h, w) logits, z_txt, z_vis (N, 256), s_t, s_v (N, 1) predicted IoU.
- `gate` (default): g = sigmoid(MLP([z_txt; z_vis; s_t; s_v])) per object, M_f = g M_t + (1 - g) M_v;
  s_t, s_v enter detached (METHOD.md 3.5: the gate must not retrain the decoders' IoU heads);
- `pixel_gate`: g = sigmoid(conv3x3([M_t, M_v])) per pixel;
- `mean`: (M_t + M_v) / 2;  `text_only`: M_t;  `visual_only`: M_v.
"""
from __future__ import annotations

import torch
from torch import nn

FUSION_MODES = ("gate", "pixel_gate", "mean", "text_only", "visual_only")


class MaskFusion(nn.Module):
    def __init__(self, mode: str = "gate", prompt_dim: int = 256, hidden: int = 256):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode {mode!r} is not one of {FUSION_MODES}")
        self.mode = mode
        if mode == "gate":
            self.gate = nn.Sequential(nn.Linear(2 * prompt_dim + 2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))
        elif mode == "pixel_gate":
            self.gate = nn.Conv2d(2, 1, kernel_size=3, padding=1)

    def forward(self, m_t: torch.Tensor, m_v: torch.Tensor, z_txt: torch.Tensor, z_vis: torch.Tensor,
                s_t: torch.Tensor, s_v: torch.Tensor) -> torch.Tensor:
        if self.mode == "text_only":
            return m_t
        if self.mode == "visual_only":
            return m_v
        if self.mode == "mean":
            return (m_t + m_v) / 2
        if self.mode == "gate":
            x = torch.cat([z_txt, z_vis, s_t.detach(), s_v.detach()], dim=-1)
            g = torch.sigmoid(self.gate(x))[:, :, None, None]
        else:
            g = torch.sigmoid(self.gate(torch.cat([m_t, m_v], dim=1)))
        return g * m_t + (1 - g) * m_v
