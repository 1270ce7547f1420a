"""Mask losses on point-sampled logits (PointRend-style importance sampling, no mmcv.ops).

Shapes: logits (N, 1, h, w) at decoder resolution; targets (N, 1, H, W) float in [0, 1] at any
resolution (the original image's). Both are sampled bilinearly at the same normalised points, so a
prediction never needs to be resized to the ground truth for training.

- `point_sample_masks`: the same sampling of (bool) ground-truth masks by gathering 4 neighbours per point
  (never a float copy of a full-resolution mask).
- `uncertain_points`: N x P points, `importance_ratio` of them the most uncertain (smallest |logit|)
  among `oversample_ratio * P` uniform candidates, the rest uniform (Sa2VA: P = 12544, 3x, 75%).
- `sigmoid_bce`, `dice_loss`, `focal_loss`: per-mask values averaged over masks.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def point_sample(inputs: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """inputs (N, C, H, W), points (N, P, 2) as (x, y) in [0, 1] -> (N, C, P), bilinear.

    Border padding: a point in the outer half-pixel reads the edge value, not a blend with zeros (which
    would under-weight masks touching the image border)."""
    grid = 2.0 * points.unsqueeze(2) - 1.0  # (N, P, 1, 2)
    return F.grid_sample(inputs.float(), grid.to(inputs.device).float(), mode="bilinear",
                         padding_mode="border", align_corners=False).squeeze(3)


def point_sample_masks(masks: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """`point_sample` of masks (N, C, H, W) of any dtype (bool ground truth at the original resolution) ->
    (N, C, P) float: the same bilinear values with border padding, from the 4 neighbours of each point
    gathered directly, so a full-resolution mask is never converted to float."""
    n, c, h, w = masks.shape
    pts = points.to(masks.device).float()
    x = (pts[..., 0] * w - 0.5).clamp(0, w - 1)
    y = (pts[..., 1] * h - 0.5).clamp(0, h - 1)
    x0, y0 = x.floor().long(), y.floor().long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    flat = masks.reshape(n, c, h * w)

    def at(yy, xx):
        return torch.gather(flat, 2, (yy * w + xx)[:, None].expand(-1, c, -1)).float()

    return (at(y0, x0) * (1 - wx) + at(y0, x1) * wx) * (1 - wy) + (at(y1, x0) * (1 - wx) + at(y1, x1) * wx) * wy


@torch.no_grad()
def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float = 3.0,
                     importance_ratio: float = 0.75) -> torch.Tensor:
    """(N, 1, h, w) logits -> (N, num_points, 2) points in [0, 1]."""
    n = logits.shape[0]
    n_candidates = int(num_points * oversample_ratio)
    n_uncertain = int(importance_ratio * num_points)
    candidates = torch.rand(n, n_candidates, 2, device=logits.device)
    uncertainty = -point_sample(logits, candidates)[:, 0].abs()
    idx = uncertainty.topk(n_uncertain, dim=1).indices
    chosen = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - n_uncertain, 2, device=logits.device)
    return torch.cat([chosen, uniform], dim=1)


def sample_logits_and_targets(logits: torch.Tensor, targets: torch.Tensor, num_points: int,
                              oversample_ratio: float = 3.0, importance_ratio: float = 0.75
                              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Point-sampled (N, P) logits and (N, P) targets at the same importance-sampled points."""
    points = uncertain_points(logits, num_points, oversample_ratio, importance_ratio)
    return point_sample(logits, points)[:, 0], point_sample_masks(targets, points)[:, 0]


def sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over points, then over masks. logits/targets (N, P)."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(1).mean()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0, per_mask: bool = False) -> torch.Tensor:
    """1 - (2 sum(p t) + eps) / (sum p + sum t + eps) per mask, averaged (per_mask: (N,)). logits/targets (N, P)."""
    p = logits.sigmoid()
    inter = (p * targets).sum(1)
    loss = 1 - (2 * inter + eps) / (p.sum(1) + targets.sum(1) + eps)
    return loss if per_mask else loss.mean()


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
               per_mask: bool = False) -> torch.Tensor:
    """Sigmoid focal loss (RetinaNet/SAM form), mean over points, then over masks (per_mask: (N,))."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1) if per_mask else loss.mean(1).mean()
