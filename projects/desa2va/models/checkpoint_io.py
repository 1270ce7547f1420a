"""Strict checkpoint reading and loading, with errors that name the file and the key.

- `read_safetensors_folder(folder)`: a Hugging Face folder's weights, `model.safetensors` or
  shards listed in `model.safetensors.index.json`.
- `read_torch_checkpoint(path, key)`: `torch.save`d dicts such as SAM-2's `{"model": state_dict}`.
- `read_training_checkpoint(path)`: the weights of a training checkpoint, an mmengine file
  (`iter_N.pth`, key `state_dict`) or a DeepSpeed folder (`iter_N.pth/mp_rank_00_model_states.pt`, key
  `module`); a work dir means its `last_checkpoint`.
- `load_state_dict_strict(module, state_dict, source)`: every module key filled, every checkpoint key
  used, every shape equal; otherwise `CheckpointError` listing the offending keys.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Mapping, Optional

import torch
from torch import nn

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_SHOW = 10  # how many offending keys an error lists


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not match the model."""


def _read_safetensors_file(path: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"cannot read safetensors file {path}: {e}") from e


def read_safetensors_folder(folder: str) -> Dict[str, torch.Tensor]:
    """All tensors of a Hugging Face folder (single file or sharded with an index)."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"model folder not found: {folder}")
    index_path = os.path.join(folder, INDEX_NAME)
    single_path = os.path.join(folder, SINGLE_NAME)
    if os.path.isfile(index_path):
        try:
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
        except Exception as e:
            raise CheckpointError(f"cannot read shard index {index_path}: {e}") from e
        state: Dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = os.path.join(folder, shard)
            part = _read_safetensors_file(shard_path)
            for k, v in part.items():
                if weight_map.get(k) != shard:
                    raise CheckpointError(f"key {k!r} in {shard_path} is not assigned to it by {index_path}")
                state[k] = v
        missing = sorted(set(weight_map) - set(state))
        if missing:
            raise CheckpointError(f"keys listed in {index_path} are absent from their shards: {missing[:_SHOW]}")
        return state
    if os.path.isfile(single_path):
        return _read_safetensors_file(single_path)
    raise CheckpointError(f"no {SINGLE_NAME} or {INDEX_NAME} in {folder}")


def read_torch_checkpoint(path: str, key: Optional[str] = None, weights_only: bool = True) -> Dict[str, torch.Tensor]:
    """A torch.save'd state dict, optionally nested under `key` (SAM-2: key='model'; mmengine training
    checkpoints: key='state_dict', weights_only=False since they also hold non-tensor objects)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = list(obj.keys())[:_SHOW] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"checkpoint {path} has no top-level key {key!r} (found {found})")
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict")
    return dict(obj)


DEEPSPEED_MODEL_STATES = "mp_rank_00_model_states.pt"
CARRIED_STATE = "carried_state"  # DeepSpeed checkpoints: the model's frozen-but-carried weights (hooks.py)


def read_training_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Weights of an mmengine / DeepSpeed training checkpoint (with a leading `module.` removed). A work
    dir is read through its `last_checkpoint` file."""
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, DEEPSPEED_MODEL_STATES)):
        last = os.path.join(path, "last_checkpoint")
        if not os.path.isfile(last):
            raise CheckpointError(f"{path} is neither a DeepSpeed checkpoint folder (no {DEEPSPEED_MODEL_STATES}) "
                                  "nor a work dir with a last_checkpoint file (did training save one?)")
        with open(last) as f:
            path = f.read().strip()
    if os.path.isdir(path):
        states = read_torch_checkpoint(os.path.join(path, DEEPSPEED_MODEL_STATES), weights_only=False)
        # frozen weights no pretrained file holds (W_rt) travel beside the module (exclude_frozen_parameters)
        sd = {**states["module"], **states.get(CARRIED_STATE, {})}
    else:
        obj = read_torch_checkpoint(path, weights_only=False)
        sd = obj.get("state_dict", obj)
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"training checkpoint {path} holds no state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                     name=lambda k: k) -> None:
    """Raise CheckpointError unless keys and shapes match the module's state dict exactly; `name(key)` is
    how a key is written in the source (the error names keys as the file holds them)."""
    expected = module.state_dict()
    missing = sorted(name(k) for k in set(expected) - set(state_dict))
    unexpected = sorted(name(k) for k in set(state_dict) - set(expected))
    mismatched = [f"{name(k)}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(expected) & set(state_dict))
                  if tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {missing[:_SHOW]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {unexpected[:_SHOW]}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {mismatched[:_SHOW]}")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match {type(module).__name__}: " + "; ".join(problems))


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Check, then copy weights into the module (casting to the module's dtypes)."""
    check_state_dict(module, state_dict, source)
    module.load_state_dict(state_dict, strict=True)


def write_safetensors_folder(state_dict: Mapping[str, torch.Tensor], folder: str,
                             max_shard_bytes: Optional[int] = None) -> None:
    """Write `model.safetensors`, or shards + `model.safetensors.index.json` (Hugging Face layout)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    if max_shard_bytes is None:
        save_file(state, os.path.join(folder, SINGLE_NAME), metadata={"format": "pt"})
        return
    shards, current, size = [], {}, 0
    for k in sorted(state):
        nbytes = state[k].numel() * state[k].element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[k] = state[k]
        size += nbytes
    shards.append(current)
    weight_map = {}
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(folder, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(v.numel() * v.element_size() for v in state.values())
    with open(os.path.join(folder, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


# ---------------------------------------------------------------------- the model's own formats
SAVED_CONFIG = "desa2va_config.json"     # settings of a saved folder (format 'desa2va', version 2)
HEADS_FILE = "heads.safetensors"         # the head's weights, head-relative names (seg_proj.*, decoupler.*, ...)
STAGE1_PREFIXES = ("text_decoder.", "real_text_proj.")


def head_relative(state_dict: Mapping[str, torch.Tensor], prefix: str = "head.") -> Dict[str, torch.Tensor]:
    """Keys of a training checkpoint (`head.text_decoder.*`) or of a saved file (`text_decoder.*`), head-relative."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def load_stage1(head: nn.Module, path: str) -> None:
    """D_txt and W_rt of `head` from a stage-1 file (`save_stage1`), a training checkpoint, a DeepSpeed
    folder or a stage-1 work dir (its `last_checkpoint`); keys and shapes checked."""
    sd = head_relative(read_training_checkpoint(path))
    own = {k: v for k, v in head.state_dict().items() if k.startswith(STAGE1_PREFIXES)}
    missing = sorted(set(own) - set(sd))
    if missing:
        raise CheckpointError(f"stage-1 checkpoint {path} lacks {len(missing)} text-decoder / Linear(Real-Text) "
                              f"weight(s): {missing[:_SHOW]}")
    w, mine = sd["real_text_proj.proj.weight"], own["real_text_proj.proj.weight"]
    if w.shape != mine.shape:
        raise CheckpointError(f"stage-1 checkpoint {path} is from another model size: its Linear(Real-Text) maps "
                              f"{w.shape[1]} -> {w.shape[0]}, this model's maps {mine.shape[1]} -> {mine.shape[0]}")
    bad = [k for k in own if sd[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(f"stage-1 checkpoint {path} has other shapes for {bad[:_SHOW]}")
    head.load_state_dict({k: sd[k] for k in own}, strict=False)


def load_sa2va_projection(projection: nn.Module, folder: str) -> None:
    """Sa2VA's projection (`seg_proj.*` of an imported folder's heads file, tools/import_sa2va.py) into
    `projection` (a Sa2VAProjection)."""
    from safetensors.torch import load_file

    path = os.path.join(folder, HEADS_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found: sa2va_init must be a folder written by tools/import_sa2va.py")
    own = projection.state_dict()
    src = {k[len("seg_proj."):]: v for k, v in load_file(path).items() if k.startswith("seg_proj.")}
    if set(src) != set(own) or any(src[k].shape != own[k].shape for k in own):
        raise CheckpointError(f"{path}: Sa2VA projection {sorted((k, tuple(v.shape)) for k, v in src.items())} does "
                              f"not fit this model's {sorted((k, tuple(v.shape)) for k, v in own.items())}")
    projection.load_state_dict(src)


def write_model_folder(model: nn.Module, folder: str) -> None:
    """A self-contained folder: `mllm/` (InternVL2.5 format, LoRA merged, tokenizer with the grounding
    tokens), `sam2_config.yaml` + `sam2.pt`, `heads.safetensors`, `desa2va_config.json` (the settings)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    model.mllm.save_pretrained(os.path.join(folder, "mllm"))
    model.grounding.save_pretrained(folder)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()},
              os.path.join(folder, HEADS_FILE), metadata={"format": "pt"})
    with open(os.path.join(folder, SAVED_CONFIG), "w") as f:
        json.dump({"format": "desa2va", "version": 2, "model": model.settings,
                   "grounding": model.grounding.settings()}, f, indent=2, sort_keys=True)


def read_folder_settings(folder: str) -> Dict:
    """The saved settings of a folder (`write_model_folder` or tools/import_sa2va.py), with its `imported_from`."""
    path = os.path.join(folder, SAVED_CONFIG)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} not found: not a saved DeSa2VA folder")
    with open(path) as f:
        saved = json.load(f)
    if saved.get("format") != "desa2va" or saved.get("version") not in (1, 2):
        raise CheckpointError(f"{path}: format {saved.get('format')!r} version {saved.get('version')!r} is not a "
                              "DeSa2VA folder (format 'desa2va', version 1 or 2)")
    return saved


def load_heads(head: nn.Module, folder: str, what: str) -> None:
    """The folder's heads file into `head`, every key used and filled (`what` names the arm in errors)."""
    from safetensors.torch import load_file

    path = os.path.join(folder, HEADS_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file not found: {path}")
    heads, own = load_file(path), head.state_dict()
    missing, unexpected = sorted(set(own) - set(heads)), sorted(set(heads) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match {what}: missing {missing[:_SHOW]}, unexpected {unexpected[:_SHOW]}")
    head.load_state_dict(heads, strict=True)
