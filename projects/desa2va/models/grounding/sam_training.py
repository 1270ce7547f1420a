"""Training SAM-2 the way SAM-2 is trained: its own prompts and its memory, differentiably.

Used by `tools/make_tiny_pretrained.py --foundations` (the CPU proxy's pre-trained tiny SAM-2) and, for its
tracking part, by stage 2's `train_with_memory` (METHOD.md 3.4).

- `decode_prompts`: the mask decoder (its inputs from `sam2_grounding.image_embeddings`, as `decode`'s)
  on points / boxes (SAM-2's box corners, labels 2 and 3) / a dense mask prompt, every mask of a
  multimask output returned (training chooses among them by loss, not by the IoU head).
- `prompt_losses`: SAM-2's recipe: 20 x focal + 1 x Dice at image resolution; with several masks only the
  one of lowest (20 focal + Dice) is supervised (a one-point prompt is ambiguous), while the IoU head is
  supervised on every mask (MSE to the mask's real IoU); + 1 x BCE of the object score.
- `track_clip`: B clips (one object each) through SAM-2's own `_track_step` with memory: frame 0 the
  conditioning frame (a mask, or points), every later frame tracked from the memory bank and the object
  pointers, each frame's memory encoded from its predicted mask, gradients through time.
- prompt samplers: a uniform positive point, a jittered box, the correction point of SAM's interactive
  training (in the larger error region), the distance-transform peak of a mask (what reprompt uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import dice_loss, focal_loss
from ..text_prompts import mask_peak_points

FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT, OBJ_WEIGHT = 20.0, 1.0, 1.0, 1.0


@dataclass
class Decoded:
    low_res: torch.Tensor   # (N, k, h, w) logits, k = 3 (multimask) or 1
    iou: torch.Tensor       # (N, k) predicted IoU
    obj: torch.Tensor       # (N, 1) object-score logits


def decode_prompts(sam2_model, embed: torch.Tensor, high_res, point_coords: torch.Tensor,
                   point_labels: torch.Tensor, mask_logits: Optional[torch.Tensor] = None,
                   multimask: bool = True, decoder=None) -> Decoded:
    """SAM-2's prompt encoder + mask decoder on (N, P, 2) points in input pixels with (N, P) labels
    (1 positive, 0 negative, 2/3 box corners, -1 padding) and an optional (N, 1, h, w) mask prompt."""
    dec = decoder if decoder is not None else sam2_model.sam_mask_decoder
    pe = sam2_model.sam_prompt_encoder
    sparse, dense = pe(points=(point_coords, point_labels), boxes=None, masks=mask_logits)
    masks, iou, _, obj = dec(image_embeddings=embed, image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
                             dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=False,
                             high_res_features=high_res)
    return Decoded(masks, iou, obj)


def prompt_losses(low_res: torch.Tensor, iou: torch.Tensor, obj: Optional[torch.Tensor], gt: torch.Tensor
                  ) -> Dict[str, torch.Tensor]:
    """SAM-2's losses of (N, k, h, w) logits against (N, H, W) ground truth (see the module docstring);
    also returns `best` (N,), the supervised mask, and `real_iou` (N, k), detached."""
    n, k = low_res.shape[:2]
    up = F.interpolate(low_res.float(), size=gt.shape[-2:], mode="bilinear", align_corners=False)
    target = gt[:, None].float().expand_as(up)
    flat, tflat = up.reshape(n * k, -1), target.reshape(n * k, -1)
    focal = focal_loss(flat, tflat, per_mask=True).view(n, k)
    dice = dice_loss(flat, tflat, per_mask=True).view(n, k)
    best = (FOCAL_WEIGHT * focal + DICE_WEIGHT * dice).argmin(1)
    rows = torch.arange(n, device=up.device)
    with torch.no_grad():
        pred, g = up > 0, target > 0.5
        inter, union = (pred & g).flatten(2).sum(-1).float(), (pred | g).flatten(2).sum(-1).float()
        real_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    out = {"loss_focal": FOCAL_WEIGHT * focal[rows, best].mean(), "loss_dice": DICE_WEIGHT * dice[rows, best].mean(),
           "loss_iou": IOU_WEIGHT * F.mse_loss(iou.float(), real_iou)}
    if obj is not None:  # every object of the synthetic data is visible
        out["loss_obj"] = OBJ_WEIGHT * F.binary_cross_entropy_with_logits(obj.float(), torch.ones_like(obj.float()))
    out["best"], out["real_iou"] = best, real_iou
    return out


def total(losses: Dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(v for k, v in losses.items() if k.startswith("loss_"))


# ---------------------------------------------------------------------------------------------- prompts
def uniform_point(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(x, y) of a pixel drawn uniformly inside a non-empty (H, W) bool mask."""
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(xs)))
    return np.array([xs[i], ys[i]], np.float32)


def jittered_box(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> np.ndarray:
    """(2, 2) corners (x0, y0), (x1, y1) of the mask's box, each side moved by up to `jitter` x its length."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    w, h = x1 - x0 + 1, y1 - y0 + 1
    d = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
    hi = np.array(mask.shape[::-1]) - 1
    lo_c = np.clip(np.array([x0, y0]) + d[:2], 0, hi)
    hi_c = np.clip(np.array([x1, y1]) + d[2:], 0, hi)
    return np.stack([np.minimum(lo_c, hi_c), np.maximum(lo_c, hi_c)]).astype(np.float32)


def correction_point(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator):
    """SAM's interactive-training click: a point drawn uniformly from the larger error region, positive
    (1) in a missed part, negative (0) in a false one; a positive point in the mask when there is no error."""
    fn, fp = gt & ~pred, pred & ~gt
    if not fn.any() and not fp.any():
        return uniform_point(gt, rng), 1
    if fn.sum() >= fp.sum():
        return uniform_point(fn, rng), 1
    return uniform_point(fp, rng), 0


def peak_point(mask: np.ndarray) -> Optional[np.ndarray]:
    """The mask's distance-transform peak (x, y) (what reprompt refinement clicks), None if empty."""
    pts, valid = mask_peak_points(torch.from_numpy(mask)[None])
    return pts[0].numpy() if bool(valid[0]) else None


# ---------------------------------------------------------------------------------------------- memory
def _frame_features(sam2_model, backbone_out: dict, rows: torch.Tensor) -> tuple:
    """SAM-2's flattened (HW, B, C) features of the frames `rows` of a `forward_image` output."""
    sub = {"backbone_fpn": [x[rows] for x in backbone_out["backbone_fpn"]],
           "vision_pos_enc": [x[rows] for x in backbone_out["vision_pos_enc"]]}
    _, feats, pos, sizes = sam2_model._prepare_backbone_features(sub)
    return feats, pos, sizes


def _track_frame(m, backbone_out: dict, num_clips: int, num_frames: int, t: int, output_dict: dict,
                 is_init: bool, point_inputs=None, mask_inputs=None) -> tuple:
    """Frame `t` of every clip through SAM-2's `_track_step` (memory-conditioned unless it is a conditioning
    frame), its memory encoded from the predicted mask and stored in `output_dict`; returns SAM-2's outputs."""
    rows = torch.arange(num_clips, device=backbone_out["backbone_fpn"][0].device) * num_frames + t
    feats, pos, sizes = _frame_features(m, backbone_out, rows)
    current, sam_out, _, _ = m._track_step(t, is_init, feats, pos, sizes, point_inputs, mask_inputs, output_dict,
                                           num_frames, False, None)
    _, _, _, low, high, obj_ptr, obj_score = sam_out
    current.update(pred_masks=low, pred_masks_high_res=high, obj_ptr=obj_ptr)
    m._encode_memory_in_output(feats, sizes, point_inputs, True, high, obj_score, current)
    cond = point_inputs is not None or mask_inputs is not None
    output_dict["cond_frame_outputs" if cond else "non_cond_frame_outputs"][t] = current
    return sam_out


def track_clip(sam2_model, backbone_out: dict, num_clips: int, num_frames: int,
               cond_masks: Optional[torch.Tensor] = None, cond_points: Optional[Dict[str, torch.Tensor]] = None,
               cond_frames=(0,)) -> List[dict]:
    """Track one object through each of `num_clips` clips with SAM-2's memory, differentiably.

    backbone_out: `sam2_model.forward_image` of the clips' frames, clip-major (row c * T + t).
    The conditioning frames `cond_frames` (frame 0 by default) get `cond_masks` (B, C, 1, S, S) float, which
    SAM-2 takes as its output there (`use_mask_input_as_output_without_sam`), or `cond_points`
    {"point_coords": (B, P, 2), "point_labels": (B, P)} (frame 0 only), decoded with the no-memory embedding.
    Every other frame, in time order, is tracked through the memory bank. Returns per frame
    {"low_res_multimasks" (B, k, h, w), "ious" (B, k), "object_score_logits" (B, 1), "conditioning": bool}.
    """
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    outs = []
    cond = sorted(cond_frames)
    order = cond[:1] + [t for t in range(num_frames) if t != cond[0]]
    for t in order:
        is_cond = t in cond
        point_inputs = mask_inputs = None
        if is_cond and cond_masks is not None:
            mask_inputs = cond_masks[:, cond.index(t)]
        elif is_cond:
            if t != cond[0] or cond_points is None:
                raise ValueError("cond_points condition frame cond_frames[0] only; give cond_masks for more")
            point_inputs = cond_points
        low_multi, _, ious, _, _, _, obj_score = _track_frame(sam2_model, backbone_out, num_clips, num_frames, t,
                                                              output_dict, t == cond[0], point_inputs, mask_inputs)
        outs.append({"frame": t, "low_res_multimasks": low_multi, "ious": ious, "object_score_logits": obj_score,
                     "conditioning": is_cond and mask_inputs is not None})
    return sorted(outs, key=lambda o: o["frame"])


def track_from_key(sam2_model, backbone_out: dict, num_clips: int, num_frames: int, key_logits: torch.Tensor,
                   key_obj_ptr: torch.Tensor, key_score: torch.Tensor) -> List[torch.Tensor]:
    """Frames 1..T-1 of each clip tracked through SAM-2's memory from a decoder output on frame 0, seeded as
    inference seeds a key frame (`VideoMemory._seed`): its low-res logits `key_logits` (B, 1, h, w) as the
    frame's output, whose memory SAM-2's encoder computes from their upsampling to the input size, the object
    pointer `key_obj_ptr` (B, C) and score `key_score` (B, 1). Differentiable into the key output (the memory
    modules' weights may be frozen). Returns the low-res logits SAM-2 outputs on frames 1..T-1, each (B, 1, h, w)
    (its best-IoU choice among the multimask outputs, as in inference)."""
    m = sam2_model
    rows = torch.arange(num_clips, device=key_logits.device) * num_frames
    feats, _, sizes = _frame_features(m, backbone_out, rows)
    high = F.interpolate(key_logits.float(), size=(m.image_size, m.image_size), mode="bilinear", align_corners=False)
    key = {"point_inputs": None, "mask_inputs": None, "pred_masks": key_logits, "pred_masks_high_res": high,
           "obj_ptr": key_obj_ptr}
    m._encode_memory_in_output(feats, sizes, None, True, high, key_score, key)
    output_dict = {"cond_frame_outputs": {0: key}, "non_cond_frame_outputs": {}}
    return [_track_frame(m, backbone_out, num_clips, num_frames, t, output_dict, False)[3]
            for t in range(1, num_frames)]
