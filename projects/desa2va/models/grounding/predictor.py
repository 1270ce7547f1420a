"""The SAM-2 video predictor the project builds: the `sam2` package's `SAM2VideoPredictor` with one switch.

`object_score_gating` (default False, as Sa2VA runs SAM-2): the `sam2` package replaces a frame's mask by
-1024 wherever the decoder's object score is <= 0; Sa2VA's copy of SAM-2 has that line commented out
(REFERENCE.md 6), so tracked frames keep the decoder's logits. The object pointer still follows the object
score in both. With the switch off, `_forward_sam_heads` returns the decoder's own logits (read by a
forward hook on the mask decoder) in place of the gated ones; everything else is the package's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.sam2_video_predictor import SAM2VideoPredictor as _PackagePredictor


class SAM2VideoPredictor(_PackagePredictor):
    object_score_gating: bool = False

    def _forward_sam_heads(self, backbone_features, point_inputs=None, mask_inputs=None, high_res_features=None,
                           multimask_output=False):
        if self.object_score_gating or not self.pred_obj_scores:
            return super()._forward_sam_heads(backbone_features, point_inputs, mask_inputs, high_res_features,
                                              multimask_output)
        raw = {}
        hook = self.sam_mask_decoder.register_forward_hook(lambda m, i, o: raw.__setitem__("masks", o[0]))
        try:
            out = super()._forward_sam_heads(backbone_features, point_inputs, mask_inputs, high_res_features,
                                             multimask_output)
        finally:
            hook.remove()
        _, _, ious, _, _, obj_ptr, object_score_logits = out
        low_multi = raw["masks"].float()
        high_multi = F.interpolate(low_multi, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False)
        if multimask_output:
            rows = torch.arange(low_multi.shape[0], device=low_multi.device)
            best = ious.argmax(-1)
            low, high = low_multi[rows, best][:, None], high_multi[rows, best][:, None]
        else:
            low, high = low_multi, high_multi
        return low_multi, high_multi, ious, low, high, obj_ptr, object_score_logits

    def object_pointer(self, mask_token: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
        """The memory's object pointer (N, C) of decoded masks, as `_forward_sam_heads` derives it from the
        output token of the chosen mask and the object score (hard choice with `no_obj_ptr`)."""
        ptr = self.obj_ptr_proj(mask_token)
        if self.pred_obj_scores:
            lam = object_score_logits.sigmoid() if self.soft_no_obj_ptr else (object_score_logits > 0).float()
            if self.fixed_no_obj_ptr:
                ptr = lam * ptr
            ptr = ptr + (1 - lam) * self.no_obj_ptr
        return ptr
