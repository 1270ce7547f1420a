"""Import a released Sa2VA Hugging Face folder into the project's saved-model format, as the sa2va arm.

Source (a Sa2VA release folder on a Qwen2 LLM: Sa2VA-1B/4B, as Sa2VA's hf/convert_to_hf.py writes it):
  config.json        Sa2VAChatConfig (`architectures` ['Sa2VAChatModel'], `auto_map`, `vision_config`,
                     `llm_config`, `template`: qwen_chat | phi3_chat | internvl2_5)
  *.safetensors      `vision_model.*`, `mlp1.*`, `language_model.*` (InternVL2.5 names),
                     `grounding_encoder.sam2_model.<SAM-2 keys>` (the memory encoder's layer scale named
                     `...fuser.layers.N.g_weight`, the sam2 package's `gamma`), `text_hidden_fcs.{0,2}.*`
  tokenizer files    already holding [SEG], <p>, </p>, <vp>, </vp>
  *.py               Sa2VA's modeling code: never run
Target (what `builder.load_pretrained` / `DeSa2VAPredictor.from_pretrained` read):
  mllm/              InternVL2.5-format folder (config.json, model.safetensors, tokenizer)
  sam2_config.yaml + sam2.pt     the SAM-2 model with Sa2VA's fine-tuned decoder
  heads.safetensors  `seg_proj.text_hidden_fcs.*`
  desa2va_config.json            stage 2, decouple False, the release's chat template, Sa2VA's inference settings
                                 (predict_forward's: first 5 frames as key frames, no reprompt, no system message,
                                 up to 12 tiles + thumbnail, post-processing low-res -> 1024 -> original with
                                 sigmoid > 0.5, best-IoU mask, no object-score gating), where the weights came from

Strict both ways: a source key no target takes, or a target key no source key fills, is an error that
names it; shapes are checked against the architecture built from the source's config (on the meta device,
so the check costs no memory).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Optional

import torch

from ..common import special_tokens as st
from .builder import SA2VA_INFERENCE
from .checkpoint_io import (SAVED_CONFIG, CheckpointError, check_state_dict, read_safetensors_folder,
                            write_safetensors_folder)

MLLM_PREFIXES = ("vision_model.", "mlp1.", "language_model.")
SAM2_PREFIX = "grounding_encoder.sam2_model."
HEAD_PREFIX = "text_hidden_fcs."
HEAD_KEYS = tuple(f"text_hidden_fcs.{i}.{p}" for i in (0, 2) for p in ("weight", "bias"))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model")
DEFAULT_SAM2_CONFIG = "configs/sam2/sam2_hiera_l.yaml"  # Sa2VA's SAM-2 (Hiera-L, the sam2 package config)
RELEASE_TEMPLATES = ("qwen_chat", "phi3_chat", "internvl2_5")  # Sa2VA-1B, Sa2VA-4B, InternVL's own
SUPPORTED_LLMS = ("Qwen2ForCausalLM",)
# Release key names that differ from the sam2 package's (Sa2VA's convert_to_hf.py renames .gamma -> .g_weight)
SAM2_RELEASE_RENAMES = ((".g_weight", ".gamma"),)
# The sa2va arm with Sa2VA's inference settings (builder.SA2VA_INFERENCE), no system message, and
# predict_forward's hard-coded tiling (1..12 tiles with a thumbnail, whatever config.json says).
SA2VA_SETTINGS = dict(stage=2, decouple=False, **SA2VA_INFERENCE, system_prompt=None, max_tiles=12)
SA2VA_GROUNDING = dict(mask_selection="best_iou", object_score_gating=False)


def _read_config(src: str) -> Dict[str, Any]:
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found: not a Sa2VA Hugging Face folder")
    with open(path) as f:
        cfg = json.load(f)
    for key in ("vision_config", "llm_config"):
        if key not in cfg:
            raise CheckpointError(f"{path} has no {key!r}: not a Sa2VA (InternVL-based) config")
    arch = (cfg["llm_config"].get("architectures") or ["?"])[0]
    if arch not in SUPPORTED_LLMS:
        raise CheckpointError(f"{path}: the LLM is {arch}, which is not supported: the importer reads Sa2VA releases "
                              f"built on {', '.join(SUPPORTED_LLMS)} (Sa2VA-1B / 4B); Sa2VA-8B / 26B use InternLM2")
    template = cfg.get("template")
    if template not in RELEASE_TEMPLATES:
        raise CheckpointError(f"{path}: template {template!r} is not supported; the importer reads the templates of "
                              f"the Qwen2-based releases: {RELEASE_TEMPLATES}")
    return cfg


def _internvl_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: v for k, v in cfg.items() if k not in ("auto_map", "architectures", "model_type", "_name_or_path")}
    # predict_forward's tiling: 1 tile up (with a thumbnail); its 12-tile cap is SA2VA_SETTINGS' max_tiles
    out.update(architectures=["InternVLChatModel"], model_type="internvl_chat", min_dynamic_patch=1, use_thumbnail=True)
    return out


def release_sam2_key(key: str) -> str:
    """A release's SAM-2 key (after the `grounding_encoder.sam2_model.` prefix) as the sam2 package names it."""
    for old, new in SAM2_RELEASE_RENAMES:
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def release_name(key: str) -> str:
    """The inverse of `release_sam2_key`, with the prefix: how the release file names a SAM-2 key."""
    for old, new in SAM2_RELEASE_RENAMES:
        if key.endswith(new):
            key = key[: -len(new)] + old
    return SAM2_PREFIX + key


def split_state(state: Dict[str, torch.Tensor], src: str):
    """Partition the source tensors into (mllm, sam2, heads); any other key is an error naming it."""
    mllm, sam2, heads, other = {}, {}, {}, []
    for k, v in state.items():
        if k.startswith(MLLM_PREFIXES):
            mllm[k] = v
        elif k.startswith(SAM2_PREFIX):
            if any(k.endswith(new) for _, new in SAM2_RELEASE_RENAMES):
                other.append(k)  # the sam2 package's name: a release writes the other (not a Sa2VA export)
                continue
            sam2[release_sam2_key(k[len(SAM2_PREFIX):])] = v
        elif k.startswith(HEAD_PREFIX):
            heads[k] = v
        else:
            other.append(k)
    if other:
        hint = "; a Sa2VA release names SAM-2's layer scales `g_weight`" if any(
            k.endswith(new) for k in other for _, new in SAM2_RELEASE_RENAMES) else ""
        raise CheckpointError(f"{src}: {len(other)} key(s) no part of the model takes: {sorted(other)[:10]}{hint}")
    if not sam2 and not heads:
        raise CheckpointError(f"{src} holds no {SAM2_PREFIX}* or {HEAD_PREFIX}* weights: a plain InternVL checkpoint, "
                              "not Sa2VA")
    missing = [k for k in HEAD_KEYS if k not in heads]
    extra = sorted(set(heads) - set(HEAD_KEYS))
    if missing or extra:
        raise CheckpointError(f"{src}: Sa2VA projection must be exactly {list(HEAD_KEYS)}; missing {missing}, "
                              f"unexpected {extra}")
    return mllm, sam2, heads


def import_sa2va(src: str, out: str, sam2_config: str = DEFAULT_SAM2_CONFIG,
                 hydra_overrides=(), settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Convert `src` into `out`; returns a summary (tensor counts per part). `settings` override
    SA2VA_SETTINGS in the written desa2va_config.json."""
    from transformers import AutoTokenizer

    from .grounding import SAM2Grounding
    from .mllm import InternVLMLLM

    src, out = os.fspath(src), os.fspath(out)
    cfg = _read_config(src)
    mllm_state, sam2_state, heads = split_state(read_safetensors_folder(src), src)
    mcfg = _internvl_config(cfg)

    # MLLM: every key of the InternVL2.5 architecture built from the source config, and nothing else.
    with torch.device("meta"):
        arch = InternVLMLLM.from_config(mcfg)
    check_state_dict(arch, mllm_state, source=f"{src} (vision_model / mlp1 / language_model)")
    d = arch.hidden_size
    shapes = {"text_hidden_fcs.0.weight": (d, d), "text_hidden_fcs.0.bias": (d,),
              "text_hidden_fcs.2.weight": (None, d), "text_hidden_fcs.2.bias": (None,)}
    for k, want in shapes.items():
        got = tuple(heads[k].shape)
        if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
            raise CheckpointError(f"{src}: {k} has shape {got}, expected {tuple('*' if w is None else w for w in want)} "
                                  f"for an LLM of width {d}")

    # SAM-2: strict load into the model its config builds (names every missing / unexpected key).
    sam2 = SAM2Grounding(sam2_config, None, hydra_overrides)
    check_state_dict(sam2.sam2_model, sam2_state, source=f"{src} ({SAM2_PREFIX}*) vs {sam2_config}",
                     name=release_name)
    sam2.sam2_model.load_state_dict(sam2_state, strict=True)
    if heads["text_hidden_fcs.2.weight"].shape[0] != sam2.prompt_dim:
        raise CheckpointError(f"{src}: text_hidden_fcs.2 maps to {heads['text_hidden_fcs.2.weight'].shape[0]}, "
                              f"SAM-2's prompt width is {sam2.prompt_dim}")

    # Tokenizer: must already hold the grounding tokens, within the embedding rows.
    names = [n for n in TOKENIZER_FILES if os.path.isfile(os.path.join(src, n))]
    if not names:
        raise CheckpointError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    mllm_dir = os.path.join(out, "mllm")
    os.makedirs(mllm_dir, exist_ok=True)
    for n in names:
        shutil.copyfile(os.path.join(src, n), os.path.join(mllm_dir, n))
    tok = AutoTokenizer.from_pretrained(mllm_dir, trust_remote_code=False, use_fast=True)
    vocab = tok.get_vocab()
    rows = mllm_state["language_model.model.embed_tokens.weight"].shape[0]
    lacking = [t for t in st.GROUNDING_TOKENS if t not in vocab]
    if lacking:
        raise CheckpointError(f"{src}: the tokenizer lacks {lacking}: not a Sa2VA tokenizer")
    beyond = [t for t in st.GROUNDING_TOKENS if vocab[t] >= rows]
    if beyond:
        raise CheckpointError(f"{src}: token ids of {beyond} are beyond the {rows} embedding rows")

    write_safetensors_folder(mllm_state, mllm_dir)
    with open(os.path.join(mllm_dir, "config.json"), "w") as f:
        json.dump(mcfg, f, indent=2, sort_keys=True)
    sam2.save_pretrained(out)
    from safetensors.torch import save_file

    save_file({f"seg_proj.{k}": v.contiguous() for k, v in heads.items()}, os.path.join(out, "heads.safetensors"),
              metadata={"format": "pt"})
    model_settings = {**SA2VA_SETTINGS, "chat_template": cfg["template"], **(settings or {})}
    with open(os.path.join(out, SAVED_CONFIG), "w") as f:
        json.dump({"format": "desa2va", "version": 2, "model": model_settings, "grounding": SA2VA_GROUNDING,
                   "imported_from": {"format": "sa2va", "path": os.path.abspath(src), "template": cfg["template"],
                                     "sam2_config": sam2_config}}, f, indent=2, sort_keys=True)
    return {"mllm_tensors": len(mllm_state), "sam2_tensors": len(sam2_state), "head_tensors": len(heads),
            "out": out}
