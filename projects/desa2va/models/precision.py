"""The precision policy (docs/ARCHITECTURE.md "Precision"), applied in one place.

`precision` is a model setting: 'bf16', 'fp32' or 'auto' (bf16 where CUDA has it, else fp32).
- bf16: frozen weights are stored in bfloat16, except normalisation layers (LayerNorm, RMSNorm,
  GroupNorm: tiny, and CPU kernels refuse fp32 inputs on bf16 norm weights); trainable weights stay
  float32 (they are their own master copy: an AdamW step of 4e-5 is not rounded away); buffers keep the
  dtype they were built with. The model's forward (and inference) runs under `torch.autocast(bf16)` on
  CUDA and CPU alike, so matrix products run in bf16 whatever dtype reaches them and no module casts.
  Losses are computed in float32.
- fp32: every weight float32, no autocast.
DeepSpeed (ZeRO-2) partitions the float32 gradients and optimizer states of the trainable weights; its own
bf16 mode (which casts every weight, frozen ones included, to bf16 and keeps its own master copy) is not
used: `engine.read_deepspeed_json` resolves the json's "auto" precision to this policy.
"""
from __future__ import annotations

import contextlib
from typing import Dict

import torch
from torch import nn

PRECISIONS = ("auto", "bf16", "fp32")
DTYPE_OF = {"bf16": torch.bfloat16, "fp32": torch.float32}


def cuda_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str) -> str:
    """'auto' -> 'bf16' on a GPU with bf16, else 'fp32'."""
    if precision not in PRECISIONS:
        raise ValueError(f"model.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cuda_has_bf16() else "fp32"
    return precision


def is_norm(module: nn.Module) -> bool:
    """Normalisation layers of torch, transformers, SAM-2 and InternViT (LayerNorm, LayerNorm2d,
    Qwen2RMSNorm, InternRMSNorm, GroupNorm, ...)."""
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(module).__name__


def apply_precision(model: nn.Module, precision: str) -> Dict[str, int]:
    """Store `model`'s weights as the policy says (after `requires_grad` is final). Returns the number of
    parameters per storage dtype."""
    precision = resolve_precision(precision)
    low = DTYPE_OF[precision]
    norm_params = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    counts: Dict[str, int] = {}
    for p in model.parameters():
        want = torch.float32 if (p.requires_grad or id(p) in norm_params) else low
        if p.dtype != want and p.is_floating_point():
            p.data = p.data.to(want)
        counts[str(p.dtype)] = counts.get(str(p.dtype), 0) + p.numel()
    return counts


def autocast(device: torch.device, precision: str):
    """The compute context of the policy: bf16 autocast on `device`'s type, or nothing for fp32."""
    if resolve_precision(precision) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
