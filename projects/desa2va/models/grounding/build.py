"""Building SAM-2 with the `sam2` package: hydra config (a file, a name in this package's configs/, or a
sam2 package config) instantiated as `predictor.SAM2VideoPredictor` (the package's video predictor with the
object-score gating switch), weights `{"model": state_dict}` loaded strictly."""
from __future__ import annotations

import os
from typing import Optional, Sequence

from torch import nn

from ..checkpoint_io import CheckpointError, load_state_dict_strict, read_torch_checkpoint

VIDEO_PREDICTOR = "projects.desa2va.models.grounding.predictor.SAM2VideoPredictor"  # the package's, one switch more
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")


def resolve_config(config: str) -> str:
    """A yaml path, a name in this package's configs/ ('sam2_tiny.yaml'), or a sam2 package config
    name ('configs/sam2/sam2_hiera_l.yaml')."""
    local = os.path.join(CONFIG_DIR, config)
    if os.path.isfile(config):
        return config
    if os.path.isfile(local):
        return local
    return config


def build_sam2_model(config: str, checkpoint: Optional[str] = None, overrides: Sequence[str] = ()) -> nn.Module:
    """Instantiate SAM-2 from a config and load `{"model": state_dict}` strictly."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import sam2  # noqa: F401  (registers sam2's hydra config module)

    path = resolve_config(config)
    if os.path.isfile(path):
        cfg = OmegaConf.load(path)
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    else:
        from hydra import compose

        try:
            cfg = compose(config_name=path, overrides=list(overrides))
        except Exception as e:
            raise CheckpointError(f"SAM-2 config {config!r} is neither a file nor a config of the sam2 "
                                  f"package (e.g. 'configs/sam2/sam2_hiera_l.yaml'): {e}") from e
    OmegaConf.resolve(cfg)
    cfg.model._target_ = VIDEO_PREDICTOR
    model = instantiate(cfg.model, _recursive_=True)
    if checkpoint is not None:
        load_state_dict_strict(model, read_torch_checkpoint(checkpoint, key="model"), source=checkpoint)
    model.resolved_config = cfg  # what save_pretrained writes next to the weights
    return model
