"""InternVL2.5 `config.json` schemas: the real 1B and 4B architectures and the tiny CPU stand-in.

The real dicts reproduce the fields of the released `config.json` files that this project reads (see
REFERENCE.md section 1); they let tests and benchmarks build full-size models with random weights,
without downloading anything. Loading a real folder always reads its own `config.json`.
"""
from __future__ import annotations

import copy
from typing import Any, Dict

_VISION_300M = {
    "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": 1024,
    "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "patch_size": 14,
    "image_size": 448, "num_channels": 3, "qkv_bias": True, "qk_normalization": False,
    "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu", "initializer_factor": 1.0,
    "initializer_range": 0.02, "drop_path_rate": 0.0, "dropout": 0.0, "attention_dropout": 0.0,
    "use_flash_attn": True,
}

_QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "vocab_size": 151674, "tie_word_embeddings": False, "use_sliding_window": False,
    "sliding_window": 32768, "max_window_layers": 70, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "torch_dtype": "bfloat16", "use_cache": True,
}

_LLM_SIZES = {
    "1B": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
           "num_attention_heads": 14, "num_key_value_heads": 2},
    "4B": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
           "num_attention_heads": 16, "num_key_value_heads": 2},
}

_CHAT = {
    "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "internvl2_5",
    "force_image_size": 448, "downsample_ratio": 0.5, "ps_version": "v2", "select_layer": -1,
    "dynamic_image_size": True, "use_thumbnail": True, "min_dynamic_patch": 1, "max_dynamic_patch": 12,
    "use_backbone_lora": 0, "use_llm_lora": 0, "torch_dtype": "bfloat16",
}


def internvl2_5_config(size: str) -> Dict[str, Any]:
    """The config.json dict of InternVL2.5-1B or -4B."""
    if size not in _LLM_SIZES:
        raise ValueError(f"unknown InternVL2.5 size {size!r}; known: {sorted(_LLM_SIZES)}")
    cfg = copy.deepcopy(_CHAT)
    cfg["vision_config"] = copy.deepcopy(_VISION_300M)
    cfg["llm_config"] = {**copy.deepcopy(_QWEN2), **_LLM_SIZES[size]}
    return cfg


def tiny_internvl_config(vocab_size: int, patch_size: int = 16) -> Dict[str, Any]:
    """Same schema, CPU-sized: 128 px tiles, patch 16 -> 16 visual tokens per tile (patch 8 -> 64, the
    proxy's pre-trained foundations: a 16 px patch is too coarse for the tiny ViT to learn the shapes), 2+2
    layers."""
    cfg = copy.deepcopy(_CHAT)
    cfg.update(force_image_size=128, max_dynamic_patch=6, torch_dtype="float32")
    cfg["vision_config"] = {**copy.deepcopy(_VISION_300M), "hidden_size": 96, "intermediate_size": 192,
                            "num_hidden_layers": 2, "num_attention_heads": 2, "patch_size": patch_size,
                            "image_size": 128, "use_flash_attn": False}
    cfg["llm_config"] = {**copy.deepcopy(_QWEN2), "hidden_size": 128, "intermediate_size": 256,
                         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                         "max_position_embeddings": 4096, "vocab_size": vocab_size, "torch_dtype": "float32",
                         "bos_token_id": None, "eos_token_id": None}
    return cfg
