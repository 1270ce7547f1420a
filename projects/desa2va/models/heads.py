"""The segmentation heads: from `[SEG]` states h to mask logits, each owning its projections and decoders.

Every head maps (grounding, frame features, h (n, d), frame index (N,), rows (N,) or None) to a
`HeadOutput`: named low-res logits (N, 1, 4e, 4e) of the N (object, frame) pairs (object rows[i] of h on
frame frame_index[i]; rows None: N = n, one per object), the name of the one inference outputs (`final`),
the prompts per object, and `decoded`: the SAM-2 decoder output that goes with the final mask (its mask
token and object score give the video memory's object pointer). Each head's `reprompt` refines the final
logits through the decoder of that output (METHOD.md 3.5). Projections run once per object, then are
gathered per row. The model has no per-arm branches.

- `Sa2VAHead` (METHOD.md 1, the control arm): z = MLP(h) -> SAM-2's decoder -> {'mask'}.
- `DecoupledHead` (3.2): z_txt = W_t h -> D_txt (a copy of SAM-2's decoder, from stage 1),
  z_vis = W_v h -> D_vis (SAM-2's own decoder, also the video memory's) -> fusion -> {'text', 'visual',
  'fused'}; W_rt (Linear(Real-Text)) rides along as the frozen alignment teacher. The fused mask's
  decoder output is D_vis's (D_txt's when fusion='text_only'), and so is its reprompt.
- `TextPretrainHead` (3.1): D_txt and W_rt, trained on text-derived point prompts; saves what
  `DecoupledHead` loads.
State-dict names (`seg_proj.`, `decoupler.`, `text_decoder.`, `real_text_proj.`, `fusion.`) are those of
the saved folders' `heads.safetensors`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional

import torch
from torch import nn

from .decoupler import Decoupler, RealTextProjection, Sa2VAProjection
from .fusion import MaskFusion
from .text_prompts import mask_peak_points, text_prompt_tokens


@dataclass
class HeadOutput:
    logits: Dict[str, torch.Tensor]   # name -> (N, 1, h, w)
    final: str                        # the logits inference outputs
    objects_z_vis: torch.Tensor       # (n, 256) sparse prompt of SAM-2's own decoder, per object
    objects_z_txt: Optional[torch.Tensor] = None  # (n, 256) text prompt per object (decoupled head)
    rows: Optional[torch.Tensor] = None           # (N,) object of each row; None: one row per object
    decoded: Optional[object] = None              # DecoderOutput going with the final mask (per row)

    @property
    def mask(self) -> torch.Tensor:
        return self.logits[self.final]

    @property
    def z_vis(self) -> torch.Tensor:
        """(N, 256) z_vis per row (what reprompt feeds to SAM-2's decoder)."""
        return self.objects_z_vis if self.rows is None else self.objects_z_vis[self.rows]


class Sa2VAHead(nn.Module):
    branch_weights = {"mask": 1.0}

    def __init__(self, hidden_size: int, prompt_dim: int):
        super().__init__()
        self.seg_proj = Sa2VAProjection(hidden_size, prompt_dim)

    def forward(self, grounding, feats, h: torch.Tensor, frame_index: torch.Tensor,
                rows: Optional[torch.Tensor] = None) -> HeadOutput:
        z = self.seg_proj(h)
        zr = z if rows is None else z[rows]
        out = grounding.decode(feats, zr, frame_index)
        return HeadOutput({"mask": out.low_res_logits}, "mask", z, rows=rows, decoded=out)

    def reprompt(self, grounding, feats, out: HeadOutput, frame_index: torch.Tensor, decoded):
        """One refinement through SAM-2's decoder (the only one), sparse token z."""
        return reprompt(grounding, feats, frame_index, decoded, _sam_point_prompt(out), None)


class TextPretrainHead(nn.Module):
    """D_txt (an independent copy of SAM-2's decoder) and W_rt; K = `num_text_points` point tokens."""

    def __init__(self, grounding, hidden_size: int, num_text_points: int):
        super().__init__()
        self._text_branch(grounding, hidden_size, num_text_points)

    def _text_branch(self, grounding, hidden_size: int, num_text_points: int) -> None:
        self.text_decoder = grounding.copy_mask_decoder()
        self.real_text_proj = RealTextProjection(hidden_size, grounding.prompt_dim)
        self.num_text_points = num_text_points

    def decode_text(self, grounding, feats, r: torch.Tensor, frame_index: torch.Tensor,
                    points: Optional[torch.Tensor] = None, drop: Optional[torch.Tensor] = None):
        """D_txt on prompt tokens built from r (N, 256) and optional points; returns SAM-2's DecoderOutput."""
        tokens = text_prompt_tokens(grounding.sam2_model.sam_prompt_encoder, r, points, drop, self.num_text_points)
        return grounding.decode(feats, tokens, frame_index, decoder=self.text_decoder)


class DecoupledHead(TextPretrainHead):
    # frozen weights that no pretrained file holds: training checkpoints and exports carry them
    carried_prefixes = ("real_text_proj.",)

    def __init__(self, grounding, hidden_size: int, num_text_points: int, fusion: str, visual_proj: str,
                 text_weight: float, visual_weight: float, fused_weight: float):
        nn.Module.__init__(self)
        self.decoupler = Decoupler(hidden_size, grounding.prompt_dim, visual_proj)  # (initialised first, as before)
        self._text_branch(grounding, hidden_size, num_text_points)
        self.real_text_proj.requires_grad_(False)  # a frozen teacher in stage 2
        self.fusion = MaskFusion(fusion, grounding.prompt_dim)
        self.branch_weights = {"text": text_weight, "visual": visual_weight, "fused": fused_weight}

    def forward(self, grounding, feats, h: torch.Tensor, frame_index: torch.Tensor,
                rows: Optional[torch.Tensor] = None) -> HeadOutput:
        z_t, z_v = self.decoupler(h)

        def per_row(z):  # gathered at each use, so the gradients accumulate as they always have
            return z if rows is None else z[rows]
        # D_txt sees z_txt in the token layout stage 1 trains it on when the points are dropped
        out_t = self.decode_text(grounding, feats, per_row(z_t), frame_index)
        out_v = grounding.decode(feats, per_row(z_v), frame_index)
        fused = self.fusion(out_t.low_res_logits, out_v.low_res_logits, per_row(z_t), per_row(z_v), out_t.iou_pred,
                            out_v.iou_pred)
        return HeadOutput({"text": out_t.low_res_logits, "visual": out_v.low_res_logits, "fused": fused}, "fused",
                          z_v, z_t, rows, decoded=out_t if self.fusion.mode == "text_only" else out_v)

    def reprompt(self, grounding, feats, out: HeadOutput, frame_index: torch.Tensor, decoded):
        """One refinement of the fused logits through the decoder of the fusion mode's output: D_vis with
        z_vis and the point as SAM-2's own point prompt; for 'text_only' D_txt, in its stage-1 layout (the
        point's K slots PE(p) + z_txt, then z_txt)."""
        if self.fusion.mode != "text_only":
            return reprompt(grounding, feats, frame_index, decoded, _sam_point_prompt(out), None)
        z_t = out.objects_z_txt if out.rows is None else out.objects_z_txt[out.rows]
        pe = grounding.sam2_model.sam_prompt_encoder

        def tokens(pts, valid):  # the point goes in D_txt's point-token slots, not as a SAM-2 point
            points = pts[:, None].expand(-1, self.num_text_points, -1).to(z_t.device)
            return text_prompt_tokens(pe, z_t, points, ~valid.to(z_t.device), self.num_text_points), None, None
        return reprompt(grounding, feats, frame_index, decoded, tokens, self.text_decoder)


def _sam_point_prompt(out: HeadOutput):
    """Reprompt prompts for SAM-2's own decoder: z_vis as the sparse token, the point as SAM-2's point prompt."""
    return lambda pts, valid: (out.z_vis, pts, valid)


def reprompt(grounding, feats, frame_index: torch.Tensor, decoded, prompts, decoder):
    """One refinement (METHOD.md 3.3): dense prompt = the current low-res logits, one positive point at
    the mask's distance-transform peak; `prompts(points (N, 2) in SAM-2 input pixels, valid (N,))` gives
    (sparse tokens, SAM-2 point coords or None, valid or None) for `decoder` (None: SAM-2's own). Objects
    with an empty mask keep their output. Returns the new DecoderOutput."""
    logits = decoded.low_res_logits
    pts, valid = mask_peak_points(logits[:, 0] > 0)
    if not bool(valid.any()):
        return decoded
    pts = pts * (grounding.image_size / logits.shape[-1])
    tok, coords, point_valid = prompts(pts, valid)
    kw = {}
    if coords is not None:
        kw = dict(point_coords=coords[:, None].to(logits.device),
                  point_labels=torch.where(point_valid, 1, -1)[:, None].to(device=logits.device, dtype=torch.int32))
    new = grounding.decode(feats, tok, frame_index, mask_logits=logits, decoder=decoder, **kw)
    keep = valid.to(logits.device)

    def pick(a, b):
        return torch.where(keep.view(-1, *([1] * (a.dim() - 1))), a, b)
    return replace(new, **{f: pick(getattr(new, f), getattr(decoded, f)) for f in
                           ("low_res_logits", "iou_pred", "object_score_logits", "mask_token")})
