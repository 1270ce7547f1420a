"""mmengine hooks of the project."""
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .models.checkpoint_io import CARRIED_STATE


def capture_rng() -> Dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class TrainableWeightsCheckpointHook(Hook):
    """Keep only trainable weights in training checkpoints (LoRA, grounding-token rows, projector, heads,
    decoders), plus the frozen weights no pretrained file holds (stage 1's W_rt: `model.checkpoint_names`):
    frozen weights are rebuilt from the pretrained files when the config builds the model, so a 4B
    checkpoint shrinks from gigabytes to what training changed. Resume loads non-strictly. (Under DeepSpeed
    the strategy's `exclude_frozen_parameters` does the same, and W_rt travels as `carried_state`.)

    The checkpoint also carries every rank's random states (python, numpy, torch, CUDA), gathered just
    before the checkpoint hook saves, and each rank restores its own on resume, so a resumed run draws the
    same loss points and point dropouts as an uninterrupted one. (Data randomness is the datasets' own and
    is replayed by the dataloader fast-forward.)"""

    priority = "LOW"  # after_train_iter runs before CheckpointHook's (VERY_LOW)

    def __init__(self) -> None:
        self._rng_by_rank: Optional[List[Dict[str, Any]]] = None

    @staticmethod
    def _checkpoint_due(runner) -> bool:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and not hook.by_epoch:
                if hook.every_n_train_iters(runner, hook.interval) or (
                        hook.save_last and hook.is_last_train_iter(runner)):
                    return True
        return False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        # a collective on every rank; the checkpoint hook then saves on the main rank only
        self._rng_by_rank = all_gather_object(capture_rng()) if self._checkpoint_due(runner) else None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = _unwrap(runner.model)
        if "state_dict" in checkpoint:
            keep = model.checkpoint_names()  # trainable weights and the frozen W_rt of stage 1
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        else:  # the DeepSpeed strategy stores module states itself, frozen weights excluded: carry W_rt
            checkpoint[CARRIED_STATE] = model.carried_state_dict()
        states = self._rng_by_rank
        if states is None and get_dist_info()[1] == 1:
            states = [capture_rng()]  # a save outside the periodic checkpoints
        if states is not None:
            checkpoint["rng_states"] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        carried = checkpoint.get(CARRIED_STATE)
        if carried:
            model = _unwrap(runner.model)
            missing = sorted(set(model.carried_state_dict()) - set(carried))
            if missing:
                raise KeyError(f"checkpoint lacks the carried weights {missing}")
            params = dict(model.named_parameters())
            with torch.no_grad():
                for k, v in carried.items():
                    params[k].copy_(v)
        states = checkpoint.get("rng_states")
        if not states:
            return
        rank, world = get_dist_info()
        if isinstance(states, dict):  # written by one process
            states = [states]
        if len(states) != world:
            print_log(f"checkpoint random states come from {len(states)} process(es), this run has {world}: "
                      "not restored (the resumed run will not repeat the uninterrupted one exactly)",
                      logger="current", level=30)
            return
        restore_rng(states[rank])
