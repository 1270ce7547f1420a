"""DeSa2VA and its Sa2VA baseline: one mmengine model, three modes (METHOD.md sections 3.1-3.3).

- `sa2va` (decouple off): h -> Linear(d,d)-ReLU-Linear(d,256) -> SAM-2 decoder; 2 BCE + 0.5 Dice on
  uncertainty-sampled points; LM loss.
- `text_pretrain` (stage 1): real-text embedding e(t) from the frozen LLM (label text alone, mean-pooled,
  cached per text) -> Linear(Real-Text) r; point tokens PE(p) + r for K positive points in the GT mask
  plus r alone, all point tokens dropped with probability p_drop; the text-aware decoder (a copy of
  SAM-2's) trained with 20 focal + 1 Dice + 1 IoU-MSE. Saves what stage 2 loads (`save_stage1`).
- `desa2va` (stage 2): z_txt = W_t h -> text-aware decoder (from stage 1, or SAM-2 init for the
  ablation), z_vis = W_v h -> SAM-2's own decoder (the visual decoder, also used for video memory),
  fusion -> triple supervision, real-text alignment (W_rt frozen) and orthogonality terms.

Training batch (`forward(data, mode='loss')`), B samples:
  input_ids, attention_mask, labels (B, L); pixel_values (N_tiles, 3, s, s) or None; num_tiles [B];
  sam_images [B] of (T_b, 3, S, S) or None; masks [B] of (n_obj_b, T_b, H_b, W_b) bool or None;
  object_texts [B] of [n_obj_b] str (None entries allowed) or None; sample_ids [B] (for errors).
  The k-th `[SEG]` of a sample prompts its k-th object on each of its frames. `text_pretrain` uses
  sam_images, masks and object_texts only.
Inference: `predict(image=... | frames=..., question=...)` -> {'text', 'masks'} (see there).
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from ..common.chat_template import (INTERNVL2_5_SYSTEM, expand_image_placeholders, generation_prompt,
                                    region_prefix)
from ..common.image_processing import (mllm_image_tiles, mllm_video_frames, region_token_cells, resize_logits,
                                      to_pil)
from ..common import special_tokens as st
from .checkpoint_io import CheckpointError, read_training_checkpoint
from .decoupler import Decoupler, RealTextProjection, Sa2VAProjection
from .fusion import MaskFusion
from .grounding import SAM2Grounding
from .losses import (dice_loss, focal_loss, iou_prediction_loss, sample_logits_and_targets, sigmoid_bce)
from .mllm import InternVLMLLM

MODES = ("sa2va", "text_pretrain", "desa2va")
STAGE1_PREFIXES = ("text_decoder.", "real_text_proj.")
HEAD_PREFIXES = ("seg_proj.", "decoupler.", "text_decoder.", "real_text_proj.", "fusion.")
SAVED_CONFIG = "desa2va_config.json"


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


class _FramesWithKeys(Sequence):
    """A video's frames as PIL images, read on access, with its key frames already read (kept)."""

    def __init__(self, frames: Sequence, key_frames: Dict[int, Any]):
        self.frames, self.key_frames = frames, key_frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int):
        return self.key_frames[i] if i in self.key_frames else to_pil(self.frames[i])


class DeSa2VAModel(BaseModel):
    """See the module docstring. Every METHOD.md section-4 switch is a constructor argument."""

    def __init__(self, mllm: Dict[str, Any], grounding: Dict[str, Any], mode: str = "desa2va",
                 fusion: str = "gate", text_weight: float = 0.5, visual_weight: float = 0.5,
                 fused_weight: float = 1.0, bce_weight: float = 2.0, dice_weight: float = 0.5,
                 align_weight: float = 0.5, orth_weight: float = 0.1, lm_weight: float = 1.0,
                 num_points: int = 12544, oversample_ratio: float = 3.0, importance_ratio: float = 0.75,
                 stage1_checkpoint: Optional[str] = None,
                 num_text_points: int = 3, point_drop_prob: float = 0.5, focal_weight: float = 20.0,
                 pretrain_dice_weight: float = 1.0, iou_weight: float = 1.0,
                 visual_proj: str = "linear", sa2va_init: Optional[str] = None,
                 reprompt_iters: int = 1, keyframes: str = "uniform", num_keyframes: int = 5,
                 max_new_tokens: int = 64, system_prompt: Optional[str] = INTERNVL2_5_SYSTEM,
                 max_tiles: Optional[int] = None, data_preprocessor=None, init_cfg=None):
        self_kwargs = {k: v for k, v in locals().items()
                       if k not in ("self", "__class__", "mllm", "grounding", "stage1_checkpoint", "sa2va_init",
                                    "data_preprocessor", "init_cfg")}
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.config = self_kwargs  # what save_pretrained records
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        keyframe_indices(1, keyframes)  # validates the strategy name early
        self.mode = mode
        self.mllm = InternVLMLLM(**mllm)
        self.grounding = SAM2Grounding(**grounding)
        d, p = self.mllm.hidden_size, self.grounding.prompt_dim
        self.weights = dict(text=text_weight, visual=visual_weight, fused=fused_weight, bce=bce_weight,
                            dice=dice_weight, align=align_weight, orth=orth_weight, lm=lm_weight,
                            focal=focal_weight, pretrain_dice=pretrain_dice_weight, iou=iou_weight)
        self.point_cfg = dict(num_points=num_points, oversample_ratio=oversample_ratio,
                              importance_ratio=importance_ratio)
        self.num_text_points, self.point_drop_prob = num_text_points, point_drop_prob
        self.reprompt_iters, self.keyframes, self.num_keyframes = reprompt_iters, keyframes, num_keyframes
        self.max_new_tokens, self.system_prompt = max_new_tokens, system_prompt
        self.max_tiles = max_tiles or int(self.mllm.config.get("max_dynamic_patch", 12))
        self._text_cache: Dict[str, torch.Tensor] = {}

        if mode == "text_pretrain":
            self.mllm.requires_grad_(False)
            self.grounding.sam2_model.requires_grad_(False)
            self.text_decoder = self.grounding.copy_mask_decoder()
            self.real_text_proj = RealTextProjection(d, p)
        else:
            self.grounding.freeze_all_but_mask_decoder()
            if mode == "sa2va":
                self.seg_proj = Sa2VAProjection(d, p)
            else:
                self.decoupler = Decoupler(d, p, visual_proj)
                self.text_decoder = self.grounding.copy_mask_decoder()
                self.real_text_proj = RealTextProjection(d, p)
                self.real_text_proj.requires_grad_(False)
                self.fusion = MaskFusion(fusion, p)
                if stage1_checkpoint:
                    self.load_stage1(stage1_checkpoint)
                if sa2va_init:
                    self.load_sa2va_projection(sa2va_init)
        if sa2va_init and mode != "desa2va":
            raise ValueError("sa2va_init initialises DeSa2VA's visual branch: it needs mode='desa2va'")

    @property
    def decouple(self) -> bool:
        return self.mode == "desa2va"

    @property
    def device(self) -> torch.device:
        return self.grounding.sam2_model.no_mem_embed.device

    def init_weights(self):
        """Weights come from the pretrained checkpoints; nothing to initialise."""

    # ------------------------------------------------------------------ stage 1 <-> stage 2
    def stage1_state_dict(self) -> Dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(STAGE1_PREFIXES)}

    def save_stage1(self, path: str) -> None:
        torch.save({"state_dict": self.stage1_state_dict(),
                    "meta": {"hidden_size": self.mllm.hidden_size, "mode": self.mode}}, path)

    def load_stage1(self, path: str) -> None:
        """Load the text-aware decoder and Linear(Real-Text) from a stage-1 file, a training checkpoint, or
        a DeepSpeed checkpoint folder, or a stage-1 work dir (its `last_checkpoint`)."""
        sd = read_training_checkpoint(path)  # also a file from save_stage1
        own = self.stage1_state_dict()
        missing = sorted(set(own) - set(sd))
        if missing:
            raise CheckpointError(f"stage-1 checkpoint {path} lacks {len(missing)} text-decoder / Linear(Real-Text) "
                                  f"weight(s): {missing[:10]}")
        w = sd["real_text_proj.proj.weight"]
        if w.shape != own["real_text_proj.proj.weight"].shape:
            raise CheckpointError(f"stage-1 checkpoint {path} is from another model size: its Linear(Real-Text) maps "
                                  f"{w.shape[1]} -> {w.shape[0]}, this model's maps {self.mllm.hidden_size} -> "
                                  f"{own['real_text_proj.proj.weight'].shape[0]}")
        bad = [k for k in own if sd[k].shape != own[k].shape]
        if bad:
            raise CheckpointError(f"stage-1 checkpoint {path} has other shapes for {bad[:10]}")
        self.load_state_dict({k: sd[k] for k in own}, strict=False)

    def load_sa2va_projection(self, folder: str) -> None:
        """Visual branch from an imported Sa2VA folder (tools/import_sa2va.py): Linear(Vision) takes Sa2VA's
        projection (needs visual_proj='sa2va_mlp'). D_vis is SAM-2's own decoder, so pointing the config's
        SAM-2 checkpoint at the folder's `sam2.pt` gives it Sa2VA's decoder."""
        from safetensors.torch import load_file

        if not isinstance(self.decoupler.vision_proj, Sa2VAProjection):
            raise ValueError("sa2va_init needs visual_proj='sa2va_mlp' (Sa2VA's projection is Linear-ReLU-Linear)")
        path = os.path.join(folder, "heads.safetensors")
        if not os.path.isfile(path):
            raise CheckpointError(f"{path} not found: sa2va_init must be a folder written by tools/import_sa2va.py")
        heads = load_file(path)
        own = {k: v for k, v in self.decoupler.vision_proj.state_dict().items()}
        src = {k[len("seg_proj."):]: v for k, v in heads.items() if k.startswith("seg_proj.")}
        if set(src) != set(own) or any(src[k].shape != own[k].shape for k in own):
            raise CheckpointError(f"{path}: Sa2VA projection {sorted((k, tuple(v.shape)) for k, v in src.items())} does "
                                  f"not fit this model's {sorted((k, tuple(v.shape)) for k, v in own.items())}")
        self.decoupler.vision_proj.load_state_dict(src)

    # ------------------------------------------------------------------ saved folders
    def head_state_dict(self) -> Dict[str, torch.Tensor]:
        """The method's own modules (projection / decoupler, text decoder, Linear(Real-Text), fusion)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(HEAD_PREFIXES)}

    def save_pretrained(self, folder: str) -> None:
        """A self-contained folder: `mllm/` (InternVL2.5 format, LoRA merged, tokenizer with grounding
        tokens), `sam2_config.yaml` + `sam2.pt`, `heads.safetensors`, `desa2va_config.json`."""
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        self.mllm.save_pretrained(os.path.join(folder, "mllm"))
        self.grounding.save_pretrained(folder)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head_state_dict().items()},
                  os.path.join(folder, "heads.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(folder, SAVED_CONFIG), "w") as f:
            json.dump({"format": "desa2va", "version": 1, "model": self.config}, f, indent=2, sort_keys=True)

    @classmethod
    def from_pretrained(cls, folder: str, torch_dtype: str = "float32", device: str = "cpu",
                        **overrides) -> "DeSa2VAModel":
        """Load a `save_pretrained` folder strictly (no training config needed); `overrides` replace saved
        settings (e.g. reprompt_iters=0)."""
        from safetensors.torch import load_file

        cfg_path = os.path.join(folder, SAVED_CONFIG)
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"{cfg_path} not found: not a saved DeSa2VA folder")
        with open(cfg_path) as f:
            saved = json.load(f)
        kwargs = {**saved["model"], **overrides}
        model = cls(mllm=dict(model_path=os.path.join(folder, "mllm"), torch_dtype=torch_dtype),
                    grounding=dict(model_config=os.path.join(folder, "sam2_config.yaml"),
                                   checkpoint=os.path.join(folder, "sam2.pt")), **kwargs)
        heads_path = os.path.join(folder, "heads.safetensors")
        if not os.path.isfile(heads_path):
            raise CheckpointError(f"weights file not found: {heads_path}")
        heads = load_file(heads_path)
        own = model.head_state_dict()
        missing, unexpected = sorted(set(own) - set(heads)), sorted(set(heads) - set(own))
        if missing or unexpected:
            raise CheckpointError(f"{heads_path} does not match mode {kwargs.get('mode')!r}: missing {missing[:10]}, "
                                  f"unexpected {unexpected[:10]}")
        model.load_state_dict(heads, strict=False)
        return model.to(device).eval()

    # ------------------------------------------------------------------ text embeddings
    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """e(t) (n, d): the frozen LLM (LoRA adapters off) on each text alone, mean over its tokens; cached."""
        todo = sorted({t for t in texts if t not in self._text_cache})
        if todo:
            tok = self.mllm.tokenizer
            enc = [tok(t, add_special_tokens=False).input_ids or [tok.pad_token_id] for t in todo]
            length = max(len(e) for e in enc)
            ids = torch.full((len(enc), length), tok.pad_token_id, dtype=torch.long)
            att = torch.zeros(len(enc), length, dtype=torch.long)
            for i, e in enumerate(enc):
                ids[i, :len(e)], att[i, :len(e)] = torch.tensor(e), 1
            ids, att = ids.to(self.device), att.to(self.device)
            lm = self.mllm.language_model
            off = lm.disable_adapter() if hasattr(lm, "disable_adapter") else contextlib.nullcontext()
            with off:
                h = self.mllm.causal_lm.model(input_ids=ids, attention_mask=att, use_cache=False).last_hidden_state
            mean = (h.float() * att[..., None]).sum(1) / att.sum(1, keepdim=True)
            for t, e in zip(todo, mean):
                self._text_cache[t] = e.cpu()
        return torch.stack([self._text_cache[t] for t in texts]).to(self.device)

    # ------------------------------------------------------------------ mmengine entry
    def forward(self, data: Dict[str, Any], data_samples=None, mode: str = "loss"):
        if mode == "loss":
            return self.compute_loss(data)
        if mode == "predict":
            return [self.predict(**item) for item in data]
        raise ValueError(f"mode must be 'loss' or 'predict', got {mode!r}")

    def compute_loss(self, data: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        if self.mode == "text_pretrain":
            return self._text_pretrain_loss(data)
        return self._instruction_loss(data)

    def _seg_params(self) -> List[nn.Parameter]:
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("mllm.")]

    def _zero_term(self) -> torch.Tensor:
        """0 x every trainable segmentation parameter: all get a (zero) gradient in every step, which
        distributed training needs, without running SAM-2 on fake inputs."""
        params = self._seg_params()
        return sum((p.sum() * 0.0 for p in params), torch.zeros((), device=self.device))

    def _object_rows(self, data, samples: Sequence[int], seg_offsets: Sequence[int]):
        """For the listed samples: per (object, frame) the [SEG]/object row and the frame row, the
        targets grouped by sample (N_b, 1, H_b, W_b), the object texts, and the frames."""
        rows, frame_rows, targets, frames = [], [], [], []
        f0 = 0
        for b in samples:
            m = data["masks"][b]
            n_obj, t = m.shape[:2]
            imgs = data["sam_images"][b]
            if imgs is None or imgs.shape[0] != t:
                raise ValueError(f"sample {self._sid(data, b)}: masks have {t} frame(s) but sam_images "
                                 f"{0 if imgs is None else imgs.shape[0]}")
            for j in range(n_obj):
                rows += [seg_offsets[b] + j] * t
                frame_rows += list(range(f0, f0 + t))
            f0 += t
            targets.append(m.reshape(n_obj * t, 1, *m.shape[2:]))
            frames.append(imgs)
        dev = self.device
        return (torch.tensor(rows, device=dev), torch.tensor(frame_rows, device=dev), targets, torch.cat(frames))

    @staticmethod
    def _sid(data, b):
        ids = data.get("sample_ids")
        return ids[b] if ids is not None else b

    def _encode(self, frames: torch.Tensor):
        enc = self.grounding.sam2_model.image_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in enc.parameters())):
            return self.grounding.encode_frames(frames.to(self.device))

    def _mask_losses(self, logits: torch.Tensor, targets: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """2-term Sa2VA loss parts (BCE, Dice) on points sampled per sample group."""
        lg, tg = self._sample_points(logits, targets)
        return sigmoid_bce(lg, tg), dice_loss(lg, tg)

    def _sample_points(self, logits, targets):
        lgs, tgs, start = [], [], 0
        for t in targets:
            lg, tg = sample_logits_and_targets(logits[start:start + t.shape[0]], t.to(logits.device), **self.point_cfg)
            lgs.append(lg)
            tgs.append(tg)
            start += t.shape[0]
        return torch.cat(lgs), torch.cat(tgs)

    def _instruction_loss(self, data: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        out = self.mllm(data["input_ids"], attention_mask=data.get("attention_mask"), labels=data.get("labels"),
                        pixel_values=data.get("pixel_values"), num_tiles=data.get("num_tiles"),
                        region_masks=data.get("region_masks"))
        w = self.weights
        losses = {"loss_lm": w["lm"] * out.loss if out.loss is not None else self._zero_term()}
        bsz = data["input_ids"].shape[0]
        masks = data.get("masks") or [None] * bsz
        n_seg = torch.bincount(out.seg_batch_index, minlength=bsz).tolist()
        offsets = np.concatenate([[0], np.cumsum(n_seg)[:-1]]).tolist()
        for b in range(bsz):
            n_obj = 0 if masks[b] is None else int(masks[b].shape[0])
            if n_seg[b] != n_obj:
                raise ValueError(f"sample {self._sid(data, b)}: {n_seg[b]} {st.SEG} token(s) but {n_obj} object mask(s)")
        samples = [b for b in range(bsz) if n_seg[b] > 0]
        zero = self._zero_term()
        if not samples:
            losses["loss_mask"] = zero
            return losses
        rows, frame_rows, targets, frames = self._object_rows(data, samples, offsets)
        feats = self._encode(frames)
        h = out.seg_hidden
        if self.mode == "sa2va":
            z = self.seg_proj(h)
            logits = self.grounding.decode(feats, z[rows], frame_rows).low_res_logits
            bce, dice = self._mask_losses(logits, targets)
            losses["loss_mask_bce"] = w["bce"] * bce + zero
            losses["loss_mask_dice"] = w["dice"] * dice
            return losses
        z_t, z_v = self.decoupler(h)
        out_t = self.decode_text_branch(feats, z_t[rows], frame_rows)
        out_v = self.grounding.decode(feats, z_v[rows], frame_rows)
        fused = self.fusion(out_t.low_res_logits, out_v.low_res_logits, z_t[rows], z_v[rows],
                            out_t.iou_pred, out_v.iou_pred)
        for name, logits in (("text", out_t.low_res_logits), ("visual", out_v.low_res_logits), ("fused", fused)):
            bce, dice = self._mask_losses(logits, targets)
            losses[f"loss_{name}_bce"] = w[name] * w["bce"] * bce
            losses[f"loss_{name}_dice"] = w[name] * w["dice"] * dice
        losses["loss_fused_bce"] = losses["loss_fused_bce"] + zero
        if w["align"] > 0:
            texts = [(b, j, t) for b in samples for j, t in enumerate((data.get("object_texts") or [None] * bsz)[b] or [])
                     if t]
            if texts:
                obj = torch.tensor([offsets[b] + j for b, j, _ in texts], device=self.device)
                r = self.real_text_proj(self.text_embeddings([t for _, _, t in texts]).to(z_t.dtype))
                losses["loss_align"] = w["align"] * (1 - F.cosine_similarity(z_t[obj], r.detach(), dim=-1)).mean()
        if w["orth"] > 0:
            losses["loss_orth"] = w["orth"] * F.cosine_similarity(z_t, z_v, dim=-1).pow(2).mean()
        return losses

    # ------------------------------------------------------------------ stage 1
    def text_prompt_tokens(self, r: torch.Tensor, points: Optional[torch.Tensor], drop: torch.Tensor) -> torch.Tensor:
        """Stage-1 prompt tokens (N, K+1, 256): PE(p_k) + r for K points (SAM-2's not-a-point embedding
        where points are dropped or missing), then r alone. points (N, K, 2) in SAM input pixels."""
        pe = self.grounding.sam2_model.sam_prompt_encoder
        n, k = r.shape[0], self.num_text_points
        pad = pe.not_a_point_embed.weight.reshape(1, 1, -1).expand(n, k, -1).to(r.dtype)
        if points is None:
            pt = pad
        else:
            pos = pe.pe_layer.forward_with_coords(points + 0.5, pe.input_image_size).to(r.dtype)
            pt = torch.where(drop[:, None, None], pad, pos + r[:, None])
        return torch.cat([pt, r[:, None]], dim=1)

    def decode_text_branch(self, feats, z_t: torch.Tensor, frame_index: torch.Tensor):
        """D_txt on z_t in the token layout stage 1 trains it on when the points are dropped (K
        not-a-point tokens, then the text token), so stage 2 starts from what stage 1 learned."""
        tokens = self.text_prompt_tokens(z_t, None, torch.ones(z_t.shape[0], dtype=torch.bool, device=z_t.device))
        return self.grounding.decode(feats, tokens, frame_index, decoder=self.text_decoder)

    def _text_pretrain_loss(self, data: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        bsz = len(data["masks"])
        samples = [b for b in range(bsz) if data["masks"][b] is not None and data["masks"][b].shape[0] > 0]
        zero = self._zero_term()
        if not samples:
            return {"loss_text_focal": zero}
        texts_all = data.get("object_texts") or [None] * bsz
        n_obj = [int(data["masks"][b].shape[0]) if b in samples else 0 for b in range(bsz)]
        offsets = np.concatenate([[0], np.cumsum(n_obj)[:-1]]).tolist()
        texts = []
        for b in samples:
            tb = texts_all[b] or []
            if len(tb) != n_obj[b] or not all(tb):
                raise ValueError(f"sample {self._sid(data, b)}: text pre-training needs one text per object, "
                                 f"got {len(tb)} for {n_obj[b]} object(s)")
            texts += list(tb)
        rows, frame_rows, targets, frames = self._object_rows(data, samples, offsets)
        feats = self._encode(frames)
        r = self.real_text_proj(self.text_embeddings(texts))[rows]
        size = self.grounding.image_size
        gt = [m for t in targets for m in t[:, 0]]
        points, has = torch.zeros(len(gt), self.num_text_points, 2), torch.zeros(len(gt), dtype=torch.bool)
        for i, m in enumerate(gt):
            p = sample_positive_points(m, self.num_text_points)
            if p is not None:
                points[i] = p * torch.tensor([size / m.shape[1], size / m.shape[0]])
                has[i] = True
        drop = (torch.rand(len(gt)) < self.point_drop_prob) | ~has
        tokens = self.text_prompt_tokens(r, points.to(self.device), drop.to(self.device))
        out = self.grounding.decode(feats, tokens, frame_rows, decoder=self.text_decoder)
        lg, tg = self._sample_points(out.low_res_logits, targets)
        w = self.weights
        return {"loss_text_focal": w["focal"] * focal_loss(lg, tg) + zero,
                "loss_text_dice": w["pretrain_dice"] * dice_loss(lg, tg),
                "loss_text_iou": w["iou"] * iou_prediction_loss(out.iou_pred[:, 0], lg, tg)}

    # ------------------------------------------------------------------ inference
    def decode_objects(self, feats, seg_hidden: torch.Tensor, frame_index: torch.Tensor,
                       reprompt_iters: Optional[int] = None) -> torch.Tensor:
        """Low-res logits (N, 1, h, w) of N objects from their [SEG] states: fused (DeSa2VA) or the single
        decoder's (Sa2VA), then `reprompt_iters` refinements through the visual decoder."""
        g = self.grounding
        if self.mode == "sa2va":
            z_v = self.seg_proj(seg_hidden)
            logits = g.decode(feats, z_v, frame_index).low_res_logits
        elif self.mode == "desa2va":
            z_t, z_v = self.decoupler(seg_hidden)
            out_t = self.decode_text_branch(feats, z_t, frame_index)
            out_v = g.decode(feats, z_v, frame_index)
            logits = self.fusion(out_t.low_res_logits, out_v.low_res_logits, z_t, z_v, out_t.iou_pred, out_v.iou_pred)
        else:
            raise ValueError("text_pretrain models do not segment from [SEG] states; train stage 2")
        for _ in range(self.reprompt_iters if reprompt_iters is None else reprompt_iters):
            logits = self._reprompt(feats, z_v, frame_index, logits)
        return logits

    def _reprompt(self, feats, z_v, frame_index, logits):
        """Dense prompt = current logits, one positive point at the mask's distance-transform peak,
        sparse token z_vis, through the visual decoder; objects with an empty mask keep their logits."""
        pts, valid = mask_peak_points(logits[:, 0] > 0)
        if not bool(valid.any()):
            return logits
        scale = self.grounding.image_size / logits.shape[-1]
        coords = (pts * scale)[:, None].to(logits.device)
        labels = torch.where(valid, 1, -1)[:, None].to(device=logits.device, dtype=torch.int32)
        new = self.grounding.decode(feats, z_v, frame_index, point_coords=coords, point_labels=labels,
                                    mask_logits=logits).low_res_logits
        return torch.where(valid.to(logits.device)[:, None, None, None], new, logits)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _generate(self, question: str, pixel_values: torch.Tensor, tokens_per_image: List[int], history,
                  region_masks: Optional[Sequence[np.ndarray]] = None):
        user = question if st.IMAGE_PLACEHOLDER in question else \
            "".join(f"Frame{i + 1}: {st.IMAGE_PLACEHOLDER}\n" if len(tokens_per_image) > 1 else
                    f"{st.IMAGE_PLACEHOLDER}\n" for i in range(len(tokens_per_image))) + question
        regions = None
        if region_masks is not None:
            grid = int(round(self.mllm.num_image_token ** 0.5))
            counts = [int(region_token_cells(np.asarray(m, bool), grid).sum()) for m in region_masks]
            if not all(counts):
                raise ValueError(f"region {counts.index(0) + 1} has an empty mask")
            head, _, rest = user.partition(st.IMAGE_PLACEHOLDER)
            user = head + st.IMAGE_PLACEHOLDER + "\n" + region_prefix(counts) + rest.lstrip("\n")
            regions = [torch.as_tensor(np.asarray(m, bool)) for m in region_masks]
        text = generation_prompt(expand_image_placeholders(user, tokens_per_image), history, self.system_prompt)
        ids = torch.tensor([self.mllm.tokenizer(text, add_special_tokens=False).input_ids], device=self.device)
        pv = pixel_values.to(self.device, self.mllm.vision_model.embeddings.patch_embedding.weight.dtype)
        return self.mllm.generate(ids, pv, max_new_tokens=self.max_new_tokens, region_masks=regions)

    @torch.no_grad()
    def predict(self, question: str, image=None, frames: Optional[Sequence] = None, history=(),
                region_masks: Optional[Sequence[np.ndarray]] = None) -> Dict[str, Any]:
        """Answer `question` about an image or a video and segment every `[SEG]` of the answer.

        image (PIL or (H, W, 3) uint8) -> masks: list of (H, W) bool arrays, one per [SEG];
        region_masks ((H, W) bool each, image only): visual prompts, referred to as region1, region2, ...
        in the question (the image is then one whole-image tile);
        frames (list of images) -> key frames through the MLLM, masks on key frames seed SAM-2 memory,
        propagated over all frames -> masks: list of (T, H, W) bool arrays. No [SEG]: masks = [].
        """
        if (image is None) == (frames is None):
            raise ValueError("predict takes exactly one of image= or frames=")
        with self._autocast():
            if image is not None:
                return self._predict_image(question, to_pil(image), history, region_masks)
            if region_masks is not None:
                raise ValueError("region_masks are supported for images only")
            return self._predict_video(question, frames, history)

    def _predict_image(self, question, image, history, region_masks=None):
        return self.predict_image([question], image, history, region_masks)[0]

    @torch.no_grad()
    def predict_image(self, questions: Sequence[str], image, history=(),
                      region_masks: Optional[Sequence[np.ndarray]] = None) -> List[Dict[str, Any]]:
        """Several questions on one image: the tiles are made once, the SAM-2 features computed once and
        every object of every answer decoded in one batch. Returns one {'text', 'masks'} per question."""
        m = self.mllm
        image = to_pil(image)
        if region_masks is not None:  # visual prompts index the token grid of one whole-image tile
            tiles = mllm_image_tiles(image, m.tile_size, 1, 1, False)
        else:
            tiles = mllm_image_tiles(image, m.tile_size, 1, self.max_tiles, bool(m.config.get("use_thumbnail", True)))
        with self._autocast():
            gens = [self._generate(q, tiles, [tiles.shape[0] * m.num_image_token], history, region_masks)
                    for q in questions]
            results = [{"text": g.text, "masks": []} for g in gens]
            owners = [q for q, g in enumerate(gens) for _ in range(g.seg_hidden.shape[0])]
            if not owners:
                return results
            feats = self._encode(self.grounding.preprocess([image]))
            h = torch.cat([g.seg_hidden for g in gens]).float()
            logits = self.decode_objects(feats, h, torch.zeros(len(owners), dtype=torch.long, device=self.device))
            masks = resize_logits(logits[:, 0], (image.height, image.width)) > 0
        for q, mk in zip(owners, masks):
            results[q]["masks"].append(mk.cpu().numpy())
        return results

    def _predict_video(self, question, frames, history):
        return self.predict_video([question], frames, history)[0]

    @torch.no_grad()
    def predict_video(self, questions: Sequence[str], frames: Sequence, history=()) -> List[Dict[str, Any]]:
        """Several questions on one video: the key frames are preprocessed once, their SAM-2 features
        computed once, and every object of every answer is tracked in one SAM-2 state (each frame's
        features computed once for all of them). `frames`: any sequence of PIL images or (H, W, 3) uint8
        arrays, read on access (key frames once, the others once by the propagation), e.g. the lazily
        decoded `inference.media.VideoFrames`. Returns one {'text', 'masks'} per question."""
        m = self.mllm
        keys = keyframe_indices(len(frames), self.keyframes, self.num_keyframes)
        key_frames = {i: to_pil(frames[i]) for i in keys}  # read once: MLLM tiles, SAM-2 features, video state
        frames = _FramesWithKeys(frames, key_frames)
        with self._autocast():
            tiles = mllm_video_frames([key_frames[i] for i in keys], m.tile_size)
            gens = [self._generate(q, tiles, [m.num_image_token] * len(keys), history) for q in questions]
            results = [{"text": g.text, "masks": []} for g in gens]
            owners = [q for q, g in enumerate(gens) for _ in range(g.seg_hidden.shape[0])]
            if not owners:
                return results
            sam_images = self.grounding.preprocess([key_frames[i] for i in keys])
            feats = self._encode(sam_images)
            n, k = len(owners), len(keys)
            h = torch.cat([g.seg_hidden for g in gens]).float()
            obj = torch.arange(n, device=self.device).repeat_interleave(k)
            fidx = torch.arange(k, device=self.device).repeat(n)
            logits = self.decode_objects(feats, h[obj], fidx)
            key_masks = {j: {keys[i]: logits[j * k + i, 0] > 0 for i in range(k)} for j in range(n)}
            first = key_frames[keys[0]]
            # the key frames' features serve the video state too (each frame encoded once in all)
            video = self.grounding.propagate(frames, (first.height, first.width), key_masks,
                                             self.grounding.video_features(feats, sam_images, keys))
        for j, q in enumerate(owners):
            results[q]["masks"].append(video[j].numpy())
        return results
