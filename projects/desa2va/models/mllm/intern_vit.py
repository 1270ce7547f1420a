"""InternViT vision encoder (InternVL2.5's InternViT-300M), with the checkpoint's key names.

Input  pixel_values (N, 3, S, S), S = image_size (448).
Output last hidden state (N, 1 + (S/patch)^2, C), CLS first; InternVL drops the CLS token.

Keys: embeddings.{class_embedding, position_embedding, patch_embedding.weight/bias},
encoder.layers.{i}.{ls1, ls2, norm1, norm2, attn.qkv, attn.proj, mlp.fc1, mlp.fc2}.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class InternVisionConfig:
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    patch_size: int = 14
    image_size: int = 448
    num_channels: int = 3
    qkv_bias: bool = True
    qk_normalization: bool = False
    norm_type: str = "layer_norm"
    layer_norm_eps: float = 1e-6
    hidden_act: str = "gelu"
    initializer_factor: float = 1.0

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "InternVisionConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.qk_normalization:
            raise ValueError("vision_config.qk_normalization=true (InternViT-6B) is not supported; "
                             "InternVL2.5-1B/4B use InternViT-300M")
        if cfg.norm_type not in ("layer_norm", "rms_norm"):
            raise ValueError(f"vision_config.norm_type {cfg.norm_type!r} is not supported")
        if cfg.hidden_act != "gelu":
            raise ValueError(f"vision_config.hidden_act {cfg.hidden_act!r} is not supported")
        return cfg


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _norm(cfg: InternVisionConfig) -> nn.Module:
    if cfg.norm_type == "rms_norm":
        return RMSNorm(cfg.hidden_size, cfg.layer_norm_eps)
    return nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)


class InternVisionEmbeddings(nn.Module):
    def __init__(self, cfg: InternVisionConfig):
        super().__init__()
        self.grid = cfg.image_size // cfg.patch_size
        self.class_embedding = nn.Parameter(torch.randn(1, 1, cfg.hidden_size))
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, cfg.patch_size)
        self.position_embedding = nn.Parameter(torch.randn(1, self.grid * self.grid + 1, cfg.hidden_size))

    def _patch_pos(self, h: int, w: int) -> torch.Tensor:
        pos = self.position_embedding[:, 1:]
        if (h, w) == (self.grid, self.grid):
            return pos
        # Other input sizes: bicubic resampling of the position grid.
        pos = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2).float()
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return pos.flatten(2).transpose(1, 2).to(self.position_embedding.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # (N, C, h, w)
        n, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(n, -1, -1)
        pos = torch.cat([self.position_embedding[:, :1], self._patch_pos(h, w)], dim=1)
        return torch.cat([cls, x], dim=1) + pos


class InternAttention(nn.Module):
    def __init__(self, cfg: InternVisionConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, l, c = x.shape
        q, k, v = self.qkv(x).reshape(n, l, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # SDPA picks flash/memory-efficient kernels on GPU
        return self.proj(out.transpose(1, 2).reshape(n, l, c))


class InternMLP(nn.Module):
    def __init__(self, cfg: InternVisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class InternVisionEncoderLayer(nn.Module):
    def __init__(self, cfg: InternVisionConfig):
        super().__init__()
        self.norm1 = _norm(cfg)
        self.attn = InternAttention(cfg)
        self.ls1 = nn.Parameter(cfg.initializer_factor * torch.ones(cfg.hidden_size))
        self.norm2 = _norm(cfg)
        self.mlp = InternMLP(cfg)
        self.ls2 = nn.Parameter(cfg.initializer_factor * torch.ones(cfg.hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


class InternVisionEncoder(nn.Module):
    def __init__(self, cfg: InternVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(InternVisionEncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x


class InternVisionModel(nn.Module):
    def __init__(self, cfg: InternVisionConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = InternVisionEmbeddings(cfg)
        self.encoder = InternVisionEncoder(cfg)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> last hidden state (N, 1 + (S/patch)^2, C)."""
        return self.encoder(self.embeddings(pixel_values))
