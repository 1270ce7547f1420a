"""SAM-2 grounding wrapper: `[SEG]` embeddings as prompt tokens, shared frame features, video memory.

Built with the `sam2` package (hydra config + `{"model": state_dict}` checkpoint, strict) as its
`SAM2VideoPredictor` (`predictor.py`: the package's, with the object-score gating switch), i.e. the plain
`SAM2Base` module (same weights) plus its video-state API.

Shapes, for image size S (1024 real, 256 tiny) and embedding size e = S/16:
- `encode_frames(images (T, 3, S, S))` -> FrameFeatures: raw FPN levels (T, 256, 4e, 4e),
  (T, 256, 2e, 2e), (T, 256, e, e); computed once, shared by every object and every decoder.
- `decode(features, prompt_tokens (N, k, 256), frame_index (N,))` -> low-res mask logits
  (N, 1, 4e, 4e), predicted IoU (N, 1), object-score logits (N, 1), output token (N, 256) of the chosen
  mask. `mask_selection` chooses it (METHOD.md 3.5): 'best_iou' (Sa2VA: the decoder's three multimask
  outputs, the one with the highest predicted IoU, in training and inference) or 'single' (token 0).
  Extra tokens are appended to the sparse prompt embeddings (after point prompts, or after SAM-2's
  padding point when there are none); an optional dense mask prompt (N, 1, 4e, 4e) of logits.
  `decoder=` selects the mask decoder (the model's own, or an independent copy from
  `copy_mask_decoder`); the high-resolution skip features go through that decoder's own
  conv_s0/conv_s1, so a trained copy never reads another decoder's projections.
- `propagate(frames, video_size, key_frames)` (video_memory.py) -> (n_obj, T, H, W) bool: the key frames'
  decoder outputs seed SAM-2's memory, propagation runs forward and backward in time, all objects in one
  state; frames are read one at a time from CPU memory.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from torch import nn

from ...common.image_processing import ImageLike, sam2_frames
from .build import build_sam2_model
from .video_memory import VideoMemory


@dataclass
class FrameFeatures:
    """Raw image-encoder outputs of T frames (high resolution first)."""
    fpn: List[torch.Tensor]
    pos: List[torch.Tensor]

    def __len__(self) -> int:
        return self.fpn[0].shape[0]


@dataclass
class DecoderOutput:
    low_res_logits: torch.Tensor       # (N, 1, 4e, 4e), never gated by the object score
    iou_pred: torch.Tensor             # (N, 1) predicted IoU of the returned mask
    object_score_logits: torch.Tensor  # (N, 1)
    mask_token: torch.Tensor           # (N, 256) SAM output token of the returned mask


MASK_SELECTIONS = ("best_iou", "single")


def image_embeddings(sam2_model, fpn: List[torch.Tensor], frame_index: torch.Tensor, decoder: Optional[nn.Module] = None):
    """(image embedding (N, C, e, e), high-resolution features or None) of the frames `frame_index` for a mask
    decoder, as SAM-2's image predictor prepares them: the no-memory embedding added, and the skip features
    through that decoder's own conv_s0 / conv_s1 (per frame, then gathered per object)."""
    dec = decoder if decoder is not None else sam2_model.sam_mask_decoder
    embed = fpn[-1]
    if sam2_model.directly_add_no_mem_embed:  # a frame without memory
        embed = embed + sam2_model.no_mem_embed.reshape(1, -1, 1, 1)
    high_res = None
    if sam2_model.use_high_res_features_in_sam:
        high_res = [dec.conv_s0(fpn[0])[frame_index], dec.conv_s1(fpn[1])[frame_index]]
    return embed[frame_index], high_res


class SAM2Grounding(VideoMemory, nn.Module):
    """SAM-2 with prompt-token decoding and video propagation.

    Args:
        model_config: see `resolve_config`.
        checkpoint: `{"model": state_dict}` file, or None for random weights.
        hydra_overrides: extra config overrides ('++model.image_size=512', ...).
        image_size: run SAM-2 at this input size instead of the config's (a multiple of 16; the weights
            do not depend on it): sets `model.image_size` and the memory attention's RoPE grid
            (image_size / 16). The datasets' `sam_size` must match.
        mask_selection: 'best_iou' (default, Sa2VA) or 'single' (see `decode`).
        object_score_gating: tracked frames' masks set to -1024 where the object score is <= 0 (the sam2
            package's behaviour); default False, as Sa2VA's SAM-2 (`predictor.py`).
    """

    def __init__(self, model_config: str, checkpoint: Optional[str] = None, hydra_overrides: Sequence[str] = (),
                 image_size: Optional[int] = None, mask_selection: str = "best_iou",
                 object_score_gating: bool = False):
        super().__init__()
        if mask_selection not in MASK_SELECTIONS:
            raise ValueError(f"grounding.mask_selection must be one of {MASK_SELECTIONS}, got {mask_selection!r}")
        if not isinstance(object_score_gating, bool):
            raise ValueError(f"grounding.object_score_gating must be True or False, got {object_score_gating!r}")
        self.mask_selection, self.object_score_gating = mask_selection, object_score_gating
        overrides = list(hydra_overrides)
        if image_size is not None:
            if image_size % 16:
                raise ValueError(f"SAM-2 image_size must be a multiple of 16, got {image_size}")
            grid = f"[{image_size // 16},{image_size // 16}]"
            overrides += [f"++model.image_size={image_size}"] + [
                f"++model.memory_attention.layer.{a}.feat_sizes={grid}" for a in ("self_attention", "cross_attention")]
        self.sam2_model = build_sam2_model(model_config, checkpoint, overrides)
        self.sam2_model.object_score_gating = object_score_gating
        self.image_size = int(self.sam2_model.image_size)
        self.prompt_dim = int(self.sam2_model.hidden_dim)
        self.low_res_size = tuple(self.sam2_model.sam_prompt_encoder.mask_input_size)

    def settings(self) -> dict:
        """The decoding switches a saved folder records next to the weights (`builder.load_pretrained`)."""
        return {"mask_selection": self.mask_selection, "object_score_gating": self.object_score_gating}

    def save_pretrained(self, folder: str, config_name: str = "sam2_config.yaml",
                        checkpoint_name: str = "sam2.pt") -> None:
        """The resolved config and `{"model": state_dict}`: `SAM2Grounding(folder/config, folder/ckpt)`."""
        from omegaconf import OmegaConf

        os.makedirs(folder, exist_ok=True)
        OmegaConf.save(self.sam2_model.resolved_config, os.path.join(folder, config_name))
        torch.save({"model": self.sam2_model.state_dict()}, os.path.join(folder, checkpoint_name))

    # ------------------------------------------------------------------ training switches
    def freeze_all_but_mask_decoder(self) -> None:
        """Sa2VA/DeSa2VA recipe: image encoder, prompt encoder and memory modules frozen."""
        self.sam2_model.requires_grad_(False)
        self.sam2_model.sam_mask_decoder.requires_grad_(True)

    def copy_mask_decoder(self) -> nn.Module:
        """An independent, trainable copy of the mask decoder (no shared parameters)."""
        dec = copy.deepcopy(self.sam2_model.sam_mask_decoder)
        dec.requires_grad_(True)
        return dec

    # ------------------------------------------------------------------ images
    def preprocess(self, frames: Sequence[ImageLike]) -> torch.Tensor:
        """(T, 3, S, S) normalised frames."""
        return sam2_frames(frames, self.image_size)

    def encode_frames(self, images: torch.Tensor) -> FrameFeatures:
        """Image encoder on a batch of frames (T, 3, S, S): run once, reused by all objects."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"SAM-2 frames are {tuple(images.shape[-2:])} but the model's image_size is "
                             f"{self.image_size}: set the datasets' sam_size to {self.image_size}")
        out = self.sam2_model.image_encoder(images)
        return FrameFeatures(fpn=list(out["backbone_fpn"]), pos=list(out["vision_pos_enc"]))

    def decode(self, features: FrameFeatures, prompt_tokens: Optional[torch.Tensor],
               frame_index: Optional[torch.Tensor] = None, point_coords: Optional[torch.Tensor] = None,
               point_labels: Optional[torch.Tensor] = None, mask_logits: Optional[torch.Tensor] = None,
               decoder: Optional[nn.Module] = None) -> DecoderOutput:
        """Decode N masks. prompt_tokens (N, k, 256) or (N, 256); frame_index (N,) picks each object's frame
        (default: object i on frame i); point_coords (N, P, 2) in input-image pixels (x, y) with labels
        (N, P) (1 pos, 0 neg, -1 pad); mask_logits (N, 1, h, w) dense prompt. The returned mask is chosen
        by `mask_selection`; its gradient flows through the chosen mask only."""
        m = self.sam2_model
        dec = decoder if decoder is not None else m.sam_mask_decoder
        pe = m.sam_prompt_encoder
        if prompt_tokens is not None and prompt_tokens.dim() == 2:
            prompt_tokens = prompt_tokens[:, None]
        n = (prompt_tokens if prompt_tokens is not None else point_coords).shape[0]
        if frame_index is None:
            if len(features) != n:
                raise ValueError(f"{n} prompts for {len(features)} frames: pass frame_index")
            frame_index = torch.arange(n, device=features.fpn[0].device)
        frame_index = frame_index.to(features.fpn[0].device)
        image_embed, high_res = image_embeddings(m, features.fpn, frame_index, dec)
        device = image_embed.device
        if point_coords is None:
            point_coords = torch.zeros(n, 1, 2, device=device)
            point_labels = -torch.ones(n, 1, dtype=torch.int32, device=device)
        if mask_logits is not None and tuple(mask_logits.shape[-2:]) != tuple(pe.mask_input_size):
            mask_logits = torch.nn.functional.interpolate(mask_logits.float(), size=pe.mask_input_size,
                                                          mode="bilinear", align_corners=False, antialias=True)
        sparse, dense = pe(points=(point_coords, point_labels), boxes=None,
                           masks=mask_logits)
        if prompt_tokens is not None:
            sparse = torch.cat([sparse, prompt_tokens], dim=1)
        best_iou = self.mask_selection == "best_iou"
        masks, iou, tokens, obj = dec(image_embeddings=image_embed, image_pe=pe.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=best_iou, repeat_image=False,
                                      high_res_features=high_res)
        if best_iou:  # SAM2Base._forward_sam_heads' choice: highest predicted IoU, and that mask's token
            rows, pick = torch.arange(n, device=device), iou.argmax(-1)
            masks, iou = masks[rows, pick][:, None], iou[rows, pick][:, None]
            tokens = tokens[rows, pick][:, None] if tokens.shape[1] > 1 else tokens
        return DecoderOutput(low_res_logits=masks.float(), iou_pred=iou.float(),
                             object_score_logits=obj.float(), mask_token=tokens[:, 0])
