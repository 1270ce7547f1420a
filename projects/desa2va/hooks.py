"""mmengine hooks of the project."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class TrainableWeightsCheckpointHook(Hook):
    """Keep only trainable weights in training checkpoints (LoRA, grounding-token rows, projector, heads,
    decoders): frozen weights are rebuilt from the pretrained files when the config builds the model, so a
    4B checkpoint shrinks from gigabytes to what training changed. Resume loads non-strictly.

    The checkpoint also carries the random states (python, numpy, torch, CUDA) and restores them on
    resume, so a resumed run draws the same loss points and point dropouts as an uninterrupted one."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        keep = {n for n, p in model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["rng_states"] = {"python": random.getstate(), "numpy": np.random.get_state(),
                                    "torch": torch.get_rng_state(),
                                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        rng = checkpoint.get("rng_states")
        if not rng:
            return
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
