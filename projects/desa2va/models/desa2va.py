"""DeSa2VAModel: the MLLM, SAM-2 and a segmentation head (`heads.py`), trained as one mmengine model.

Built only by `builder.build_model` (the registry's `DeSa2VAModel`), which chooses the arm (`stage`,
`decouple`) and the head; this class has no per-arm branches beyond stage 1 vs stage 2.

Training batch (`forward(data, mode='loss')`), B samples:
  input_ids, attention_mask, labels (B, L); pixel_values (N_tiles, 3, s, s) or None; num_tiles [B];
  sam_images [B] of (T_b, 3, S, S) or None; masks [B] of (n_obj_b, T_b, H_b, W_b) bool or None;
  object_texts [B] of [n_obj_b] str (None entries allowed) or None; sample_ids [B] (for errors);
  skipped: the bad samples the datasets dropped from the batch (logged; only these: a zero-gradient step).
  The k-th `[SEG]` of a sample prompts its k-th object on each of its frames. Stage 1 uses sam_images,
  masks and object_texts only.
- stage 2: MLLM -> h at `[SEG]` -> head (named logits) -> `objectives.segmentation_losses` + LM loss
  (+ alignment and orthogonality terms for the decoupled head);
- stage 1: e(t) -> W_rt -> text-derived point prompts -> D_txt -> `objectives.stage1_losses`.
Inference (`projects.desa2va.inference`) uses `decode_objects` (logits) / `decode_objects_full` (with the
mask token and object score that seed the video memory): the head's output, then reprompt.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel
from torch import nn

from ..common import special_tokens as st
from .checkpoint_io import STAGE1_PREFIXES, write_model_folder
from .objectives import (LossWeights, PointSampling, alignment_loss, orthogonality_loss, segmentation_losses,
                         stage1_losses)
from .grounding.sam_training import track_from_key
from .precision import autocast, resolve_precision
from .text_prompts import RealTextEncoder, sample_positive_points


class DeSa2VAModel(BaseModel):
    """`settings`: the resolved settings (`builder.resolve_settings`, without the mllm / grounding paths)."""

    def __init__(self, settings: Dict[str, Any], mllm: nn.Module, grounding: nn.Module, head: nn.Module,
                 data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.settings = dict(settings)  # what save_pretrained records
        self.skipped_samples = 0  # bad training samples dropped from batches so far (`forward`)
        self.stage, self.decouple = settings["stage"], settings["decouple"]
        self.mllm, self.grounding, self.head = mllm, grounding, head
        s = settings
        self.weights = LossWeights(**{k: s.get(f"{k}_weight", 0.0) for k in ("lm", "bce", "dice", "align", "orth",
                                                                           "focal", "pretrain_dice", "iou")})
        self.points = PointSampling(s["num_points"], s["oversample_ratio"], s["importance_ratio"],
                                    s.get("gt_resolution", "full"))
        self.objects_per_sample = s.get("objects_per_sample")
        self.point_drop_prob = s.get("point_drop_prob")
        self.reprompt_iters, self.keyframes = s.get("reprompt_iters"), s.get("keyframes")
        self.num_keyframes, self.max_new_tokens = s.get("num_keyframes"), s.get("max_new_tokens")
        self.system_prompt, self.chat_template = s.get("system_prompt"), s.get("chat_template")
        self.postprocess = s.get("postprocess")
        self.train_with_memory = bool(s.get("train_with_memory"))
        self.max_tiles = s.get("max_tiles") or int(mllm.config.get("max_dynamic_patch", 12))
        self.precision = resolve_precision(s.get("precision", "auto"))  # weights stored by builder.apply_precision
        self.text_encoder = RealTextEncoder(s.get("text_cache_size") or 4096)

    @property
    def device(self) -> torch.device:
        return self.grounding.sam2_model.no_mem_embed.device

    def autocast(self):
        """The compute context of the precision policy (`precision.py`): bf16 autocast, or nothing for fp32."""
        return autocast(self.device, self.precision)

    def init_weights(self):
        """Weights come from the pretrained checkpoints; nothing to initialise."""

    # ------------------------------------------------------------------ saving
    def stage1_state_dict(self) -> Dict[str, torch.Tensor]:
        """D_txt and W_rt, head-relative names (what stage 2 loads)."""
        return {k: v for k, v in self.head.state_dict().items() if k.startswith(STAGE1_PREFIXES)}

    def save_stage1(self, path: str) -> None:
        torch.save({"state_dict": self.stage1_state_dict(),
                    "meta": {"hidden_size": self.mllm.hidden_size, "stage": self.stage}}, path)

    def checkpoint_names(self) -> set:
        """What a training checkpoint holds: the trainable parameters and the frozen ones that no pretrained
        file rebuilds (the decoupled head's W_rt, trained in stage 1; `head.carried_prefixes`)."""
        carried = tuple("head." + p for p in getattr(self.head, "carried_prefixes", ()))
        return {n for n, p in self.named_parameters() if p.requires_grad or n.startswith(carried)}

    def carried_state_dict(self) -> Dict[str, torch.Tensor]:
        """The frozen part of `checkpoint_names` (what DeepSpeed's exclude_frozen_parameters would drop)."""
        keep = self.checkpoint_names()
        return {n: p.detach().cpu().clone() for n, p in self.named_parameters() if n in keep and not p.requires_grad}

    def save_pretrained(self, folder: str) -> None:
        """A self-contained folder that `builder.load_pretrained` reads (see `checkpoint_io.write_model_folder`)."""
        write_model_folder(self, folder)

    # ------------------------------------------------------------------ mmengine entry
    def forward(self, data: Dict[str, Any], data_samples=None, mode: str = "loss"):
        if mode != "loss":
            raise ValueError(f"forward computes training losses (mode='loss'), got mode={mode!r}; inference is "
                             "projects.desa2va.inference.predict(model, ...)")
        skipped = data.get("skipped") or []
        if skipped:  # bad samples the datasets dropped (`datasets.base.collate`): named, counted, not replaced
            self.skipped_samples += len(skipped)
            print_log(f"skipped {len(skipped)} bad sample(s) of this batch ({self.skipped_samples} so far): "
                      + "; ".join(f"{s['item']} ({s['reason']}): {s['message']}" for s in skipped),
                      logger="current", level=logging.WARNING)
            if "input_ids" not in data:  # every sample of the batch was bad: a step of zero gradients
                return {"loss_empty_batch": self._zero_term(with_mllm=True)}
        with self.autocast():
            return self.compute_loss(data)

    def compute_loss(self, data: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return self._stage1_loss(data) if self.stage == 1 else self._stage2_loss(data)

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """e(t) (n, d), cached per text (`text_prompts.RealTextEncoder`)."""
        return self.text_encoder(self.mllm, texts, self.device)

    def _zero_term(self, with_mllm: bool = False) -> torch.Tensor:
        """0 x every trainable segmentation parameter (`with_mllm`: every trainable parameter): all get a
        (zero) gradient in every step, which distributed training needs, without running SAM-2 on fake
        inputs."""
        params = [p for n, p in self.named_parameters() if p.requires_grad and (with_mllm or not n.startswith("mllm."))]
        return sum((p.sum() * 0.0 for p in params), torch.zeros((), device=self.device))

    @staticmethod
    def _sid(data, b):
        ids = data.get("sample_ids")
        return ids[b] if ids is not None else b

    def _objects_of(self, n_obj: int) -> List[int]:
        """The objects of a sample that the mask loss sees: all of them, or with `objects_per_sample` = F
        (Sa2VA: 5) exactly F: a random F of them, or all of them repeated in order and cut to F."""
        f = self.objects_per_sample
        if not f or n_obj == f:
            return list(range(n_obj))
        if n_obj > f:
            return torch.randperm(n_obj)[:f].tolist()
        return (list(range(n_obj)) * (f // n_obj + 1))[:f]

    def _object_rows(self, data, samples: Sequence[int], seg_offsets: Sequence[int], fixed: bool = False):
        """For the listed samples: per (object, frame) the [SEG]/object row and the frame row, the
        targets grouped by sample (N_b, 1, H_b, W_b), the frames, and per sample (sample, its objects,
        its first frame row, its number of frames). `fixed`: the objects of
        `_objects_of` (stage 2's mask loss) instead of each object once."""
        rows, frame_rows, targets, frames, layout = [], [], [], [], []
        f0 = 0
        for b in samples:
            m = data["masks"][b]
            n_obj, t = m.shape[:2]
            imgs = data["sam_images"][b]
            if imgs is None or imgs.shape[0] != t:
                raise ValueError(f"sample {self._sid(data, b)}: masks have {t} frame(s) but sam_images "
                                 f"{0 if imgs is None else imgs.shape[0]}")
            objs = self._objects_of(n_obj) if fixed else list(range(n_obj))
            layout.append((b, objs, f0, t))
            for j in objs:
                rows += [seg_offsets[b] + j] * t
                frame_rows += list(range(f0, f0 + t))
            f0 += t
            picked = m if objs == list(range(n_obj)) else m[objs]  # (a copy only when objects repeat or are cut)
            targets.append(picked.reshape(len(objs) * t, 1, *m.shape[2:]))
            frames.append(imgs)
        dev = self.device
        return (torch.tensor(rows, device=dev), torch.tensor(frame_rows, device=dev), targets, torch.cat(frames),
                layout)

    def encode(self, frames: torch.Tensor):
        """SAM-2 frame features, with gradient only when the image encoder trains."""
        enc = self.grounding.sam2_model.image_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and any(p.requires_grad for p in enc.parameters())):
            return self.grounding.encode_frames(frames.to(self.device))

    # ------------------------------------------------------------------ stage 2
    def _stage2_loss(self, data: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        out = self.mllm(data["input_ids"], attention_mask=data.get("attention_mask"), labels=data.get("labels"),
                        pixel_values=data.get("pixel_values"), num_tiles=data.get("num_tiles"),
                        region_masks=data.get("region_masks"))
        w = self.weights
        losses = {"loss_lm": w.lm * out.loss if out.loss is not None else self._zero_term()}
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
        rows, frame_rows, targets, frames, layout = self._object_rows(data, samples, offsets, fixed=True)
        feats = self.encode(frames)
        h = out.seg_hidden
        head = self.head(self.grounding, feats, h, frame_rows, rows)
        seg = segmentation_losses(head.logits, self.head.branch_weights, targets, w, self.points)
        seg[f"loss_{head.final}_bce"] = seg[f"loss_{head.final}_bce"] + zero
        losses.update(seg)
        if self.train_with_memory:
            losses.update(self._memory_losses(data, layout, head, feats))
        if not self.decouple:
            return losses
        z_t, z_v = head.objects_z_txt, head.objects_z_vis  # per object
        if w.align > 0:
            texts = [(b, j, t) for b in samples for j, t in enumerate((data.get("object_texts") or [None] * bsz)[b] or [])
                     if t]
            if texts:
                obj = torch.tensor([offsets[b] + j for b, j, _ in texts], device=self.device)
                r = self.head.real_text_proj(self.text_embeddings([t for _, _, t in texts]))
                losses["loss_align"] = w.align * alignment_loss(z_t[obj], r)
        if w.orth > 0:
            losses["loss_orth"] = w.orth * orthogonality_loss(z_t, z_v)
        return losses

    def _memory_losses(self, data: Dict[str, Any], layout, head, feats) -> Dict[str, torch.Tensor]:
        """`train_with_memory` (METHOD.md 3.4): on each video sample, every object's final output on its
        first sampled frame seeds SAM-2's memory as a key frame does at inference (logits, the object
        pointer of its decoder's mask token, its object score); the later frames are tracked through the
        memory by SAM-2's own decoder and their masks supervised like the final output (2 BCE + 0.5 Dice,
        its branch weight), the gradient reaching the key output and the [SEG] state through the memory."""
        m, dec = self.grounding.sam2_model, self.grounding.sam2_model.sam_mask_decoder
        logits, targets, pair = [], [], 0
        for b, objs, f0, t in layout:  # (sample, its objects, its first frame row, its frames)
            first = sorted({j: i for i, j in reversed(list(enumerate(objs)))}.items())  # (object, its first slot)
            if t > 1:
                keys = torch.tensor([pair + i * t for _, i in first], device=self.device)
                rows = (torch.arange(t, device=self.device) + f0).repeat(len(first))  # clip-major
                backbone = {"backbone_fpn": [dec.conv_s0(feats.fpn[0][rows]), dec.conv_s1(feats.fpn[1][rows]),
                                             feats.fpn[2][rows]], "vision_pos_enc": [p[rows] for p in feats.pos]}
                score = head.decoded.object_score_logits[keys]
                tracked = track_from_key(m, backbone, len(first), t, head.mask[keys],
                                         m.object_pointer(head.decoded.mask_token[keys], score), score)
                logits.append(torch.stack(tracked, 1).flatten(0, 1))  # (objects x (t - 1), 1, h, w)
                gt = data["masks"][b][[j for j, _ in first]][:, 1:]
                targets.append(gt.reshape(-1, 1, *gt.shape[2:]))
            pair += len(objs) * t
        if not logits:
            return {}
        weights = {"memory": self.head.branch_weights[head.final]}
        return segmentation_losses({"memory": torch.cat(logits)}, weights, targets, self.weights, self.points)

    # ------------------------------------------------------------------ stage 1
    def _stage1_loss(self, data: Dict[str, Any]) -> Dict[str, torch.Tensor]:
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
        rows, frame_rows, targets, frames, _ = self._object_rows(data, samples, offsets)
        feats = self.encode(frames)
        head = self.head
        r = head.real_text_proj(self.text_embeddings(texts))[rows]
        size, k = self.grounding.image_size, head.num_text_points
        gt = [m for t in targets for m in t[:, 0]]
        points, has = torch.zeros(len(gt), k, 2), torch.zeros(len(gt), dtype=torch.bool)
        for i, m in enumerate(gt if self.point_drop_prob < 1 else []):  # at 1 every row is text-only
            p = sample_positive_points(m, k)
            if p is not None:
                points[i] = p * torch.tensor([size / m.shape[1], size / m.shape[0]])
                has[i] = True
        drop = (torch.rand(len(gt)) < self.point_drop_prob) | ~has
        out = head.decode_text(self.grounding, feats, r, frame_rows, points.to(self.device), drop.to(self.device))
        losses = stage1_losses(out, targets, self.weights, self.points)
        losses["loss_text_focal"] = losses["loss_text_focal"] + zero
        return losses

    # ------------------------------------------------------------------ inference core
    def decode_objects_full(self, feats, seg_hidden: torch.Tensor, frame_index: torch.Tensor,
                            reprompt_iters: Optional[int] = None):
        """`decode_objects` as a DecoderOutput: the final logits with the mask token and object score of
        the decoder they come from (what a key frame puts into SAM-2's video memory)."""
        if self.stage == 1:
            raise ValueError("a stage-1 (text pre-training) model does not segment from [SEG] states; train stage 2")
        out = self.head(self.grounding, feats, seg_hidden, frame_index)
        decoded = replace(out.decoded, low_res_logits=out.mask)
        for _ in range(self.reprompt_iters if reprompt_iters is None else reprompt_iters):
            decoded = self.head.reprompt(self.grounding, feats, out, frame_index, decoded)
        return decoded

    def decode_objects(self, feats, seg_hidden: torch.Tensor, frame_index: torch.Tensor,
                       reprompt_iters: Optional[int] = None) -> torch.Tensor:
        """Low-res logits (N, 1, h, w) of N objects from their [SEG] states: the head's output (fused for
        DeSa2VA, the single decoder's for Sa2VA), then `reprompt_iters` refinements (the head's `reprompt`)."""
        return self.decode_objects_full(feats, seg_hidden, frame_index, reprompt_iters).low_res_logits
