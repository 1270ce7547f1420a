"""Saving an `InternVLMLLM` in the InternVL2.5 folder format (LoRA merged, tokenizer with grounding tokens)."""
from __future__ import annotations

import copy
import json
import os
from typing import Dict

import torch

from ..checkpoint_io import write_safetensors_folder


@torch.no_grad()
def merged_state_dict(mllm) -> Dict[str, torch.Tensor]:
    """Weights in the InternVL2.5 checkpoint layout with LoRA merged; the model is not modified."""
    from peft.tuners.lora import LoraLayer  # (peft is imported only when saving)

    out = {f"vision_model.{k}": v for k, v in mllm.vision_model.state_dict().items()}
    out.update({f"mlp1.{k}": v for k, v in mllm.mlp1.state_dict().items()})
    lm = mllm.causal_lm
    deltas = {f"{name}.weight": mod.get_delta_weight(mod.active_adapters[0])
              for name, mod in lm.named_modules() if isinstance(mod, LoraLayer) and mod.active_adapters}
    for k, v in lm.state_dict().items():
        if ".lora_" in k:
            continue
        clean = k.replace(".base_layer.", ".")
        out[f"language_model.{clean}"] = v + deltas[clean].to(v.dtype) if clean in deltas else v
    return out


def save_mllm_folder(mllm, folder: str) -> None:
    """An InternVL2.5-format folder (config.json, model.safetensors, tokenizer with the grounding
    tokens) that `InternVLMLLM(folder)` loads strictly, LoRA merged."""
    os.makedirs(folder, exist_ok=True)
    state = merged_state_dict(mllm)
    config = copy.deepcopy(mllm.config)
    config["llm_config"]["vocab_size"] = int(state["language_model.model.embed_tokens.weight"].shape[0])
    write_safetensors_folder(state, folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    mllm.tokenizer.save_pretrained(folder)
