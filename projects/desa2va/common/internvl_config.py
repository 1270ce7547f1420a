"""Reading an InternVL2.5 folder's `config.json` and the image geometry it implies."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict


class ConfigError(RuntimeError):
    pass


def read_internvl_config(model_path: str) -> Dict[str, Any]:
    path = os.path.join(model_path, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"InternVL config not found: {path}")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except Exception as e:
        raise ConfigError(f"cannot parse {path}: {e}") from e
    for key in ("vision_config", "llm_config"):
        if key not in cfg:
            raise ConfigError(f"{path} has no {key!r}: not an InternVL2.5 (internvl_chat) config")
    archs = cfg["llm_config"].get("architectures") or []
    if "Qwen2ForCausalLM" not in archs:
        raise ConfigError(f"{path}: llm_config.architectures={archs}; only Qwen2ForCausalLM "
                          "(InternVL2.5-1B/4B) is supported")
    return cfg


@dataclass(frozen=True)
class ImageGeometry:
    tile_size: int          # 448 for InternVL2.5
    num_image_token: int    # visual tokens per tile (256)
    max_tiles: int          # max_dynamic_patch (12)
    min_tiles: int
    use_thumbnail: bool

    @classmethod
    def from_config(cls, cfg: Dict[str, Any]) -> "ImageGeometry":
        v = cfg["vision_config"]
        tile = int(cfg.get("force_image_size") or v["image_size"])
        ratio = float(cfg.get("downsample_ratio", 0.5))
        return cls(tile_size=tile, num_image_token=int((tile // v["patch_size"]) ** 2 * ratio ** 2),
                   max_tiles=int(cfg.get("max_dynamic_patch", 12)), min_tiles=int(cfg.get("min_dynamic_patch", 1)),
                   use_thumbnail=bool(cfg.get("use_thumbnail", True)))
