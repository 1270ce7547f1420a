"""The training objectives (METHOD.md 1, 3.1, 3.2), built from the loss primitives of `losses.py`.

- `segmentation_losses`: 2.0 BCE + 0.5 Dice on uncertainty-sampled points of every named logits the head
  returns, each times its branch weight: Sa2VA's mask loss (one branch, weight 1) and DeSa2VA's triple
  supervision (text, visual, fused: w_t, w_v, w_f) are the same function;
- `stage1_losses`: 20 focal + 1 Dice on D_txt's point-sampled text masks + 1 IoU-MSE against the IoU of
  the whole thresholded mask (upsampled to the ground truth's size) with the ground truth (METHOD.md 3.5);
- `alignment_loss`: 1 - cos(z_txt, W_rt e(t)), the teacher detached;
- `orthogonality_loss`: mean cos(z_txt, z_vis)^2.
Loss weights are one `LossWeights`; point sampling one `PointSampling`, applied per sample group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import torch
import torch.nn.functional as F

from .losses import dice_loss, focal_loss, sample_logits_and_targets, sigmoid_bce


@dataclass(frozen=True)
class LossWeights:
    """The weights the builder resolved (METHOD.md's defaults are written in builder.py only); an arm's
    unused weights are 0."""
    lm: float
    bce: float
    dice: float
    align: float
    orth: float
    focal: float
    pretrain_dice: float
    iou: float


@dataclass(frozen=True)
class PointSampling:
    """Uncertainty point sampling of masks (the builder's `num_points`, `oversample_ratio`, `importance_ratio`,
    `gt_resolution`: 'full' samples the ground truth at its own resolution, 'logits' first resizes it
    (nearest) to the logits' size, as Sa2VA does)."""
    num_points: int
    oversample_ratio: float
    importance_ratio: float
    gt_resolution: str = "full"

    def __call__(self, logits: torch.Tensor, targets: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Point-sampled logits and targets (N, P); `targets` grouped by sample ((N_b, 1, H_b, W_b), rows of
        `logits` in the same order), each group sampled against its own resolution."""
        lgs, tgs, start = [], [], 0
        for t in targets:
            if self.gt_resolution == "logits" and tuple(t.shape[-2:]) != tuple(logits.shape[-2:]):
                t = F.interpolate(t.float(), size=logits.shape[-2:], mode="nearest")
            lg, tg = sample_logits_and_targets(logits[start:start + t.shape[0]], t.to(logits.device), self.num_points,
                                               self.oversample_ratio, self.importance_ratio)
            lgs.append(lg)
            tgs.append(tg)
            start += t.shape[0]
        return torch.cat(lgs), torch.cat(tgs)


def segmentation_losses(logits: Mapping[str, torch.Tensor], branch_weights: Mapping[str, float],
                        targets: List[torch.Tensor], w: LossWeights, points: PointSampling) -> Dict[str, torch.Tensor]:
    """{loss_<name>_bce, loss_<name>_dice} for every named logits (N, 1, h, w)."""
    out = {}
    for name, lg in logits.items():
        pl, pt = points(lg, targets)
        out[f"loss_{name}_bce"] = branch_weights[name] * w.bce * sigmoid_bce(pl, pt)
        out[f"loss_{name}_dice"] = branch_weights[name] * w.dice * dice_loss(pl, pt)
    return out


def stage1_losses(decoded, targets: List[torch.Tensor], w: LossWeights, points: PointSampling
                  ) -> Dict[str, torch.Tensor]:
    """Hybrid loss of the text masks (`decoded`: SAM-2's DecoderOutput of D_txt)."""
    lg, tg = points(decoded.low_res_logits, targets)
    real = whole_mask_iou(decoded.low_res_logits, targets)
    return {"loss_text_focal": w.focal * focal_loss(lg, tg),
            "loss_text_dice": w.pretrain_dice * dice_loss(lg, tg),
            "loss_text_iou": w.iou * F.mse_loss(decoded.iou_pred[:, 0].float(), real)}


@torch.no_grad()
def whole_mask_iou(logits: torch.Tensor, targets: List[torch.Tensor]) -> torch.Tensor:
    """(N,) IoU of each whole mask (low-res logits (N, 1, h, w) upsampled bilinearly to its ground truth's
    size, > 0) with the ground truth (`targets` grouped by sample, (N_b, 1, H_b, W_b)); 1 when both are empty."""
    out, start = [], 0
    for t in targets:
        lg = logits[start:start + t.shape[0]].float()
        pred = F.interpolate(lg, size=t.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0
        gt = t[:, 0].to(pred.device) > 0.5
        inter, union = (pred & gt).flatten(1).sum(1).float(), (pred | gt).flatten(1).sum(1).float()
        out.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)))
        start += t.shape[0]
    return torch.cat(out)


def alignment_loss(z_txt: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(z_txt, teacher.detach(), dim=-1)).mean()


def orthogonality_loss(z_txt: torch.Tensor, z_vis: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(z_txt, z_vis, dim=-1).pow(2).mean()
