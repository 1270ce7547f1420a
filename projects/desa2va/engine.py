"""Runner set-up shared by tools/train.py: DeepSpeed (xtuner's strategy under mmengine's FlexibleRunner),
and distributed start-up on machines without GPUs (gloo)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import torch
from mmengine.registry import STRATEGIES
from xtuner.engine._strategy import DeepSpeedStrategy

from .models.precision import resolve_precision


@STRATEGIES.register_module(force=True)
class DeSa2VADeepSpeedStrategy(DeepSpeedStrategy):
    """xtuner's DeepSpeed strategy, plus the checkpoint callbacks mmengine's version skips: hooks see the
    checkpoint before it is saved and after it is resumed (the project's hook stores the per-rank random
    states there). Frozen weights are left out of checkpoints (`exclude_frozen_parameters`)."""

    def save_checkpoint(self, filename: str, *, save_optimizer: bool = True, save_param_scheduler: bool = True,
                        extra_ckpt: Optional[dict] = None, callback=None) -> None:
        extra_ckpt = {} if extra_ckpt is None else extra_ckpt
        if callback is not None:
            callback(extra_ckpt)
        super().save_checkpoint(filename, save_optimizer=save_optimizer,
                                save_param_scheduler=save_param_scheduler, extra_ckpt=extra_ckpt)

    def resume(self, filename: str, *, resume_optimizer: bool = True, resume_param_scheduler: bool = True,
               map_location="default", callback=None) -> dict:
        checkpoint = super().resume(filename, resume_optimizer=resume_optimizer,
                                    resume_param_scheduler=resume_param_scheduler)
        if callback is not None:
            callback(checkpoint)
        return checkpoint


def read_deepspeed_json(path: str, precision: str = "auto") -> Tuple[Dict[str, Any], str]:
    """(DeepSpeed config, the run's precision). The json's `bf16.enabled` says the precision: true -> 'bf16',
    false -> 'fp32', "auto" -> the model's `precision` ('auto': bf16 where the GPU has it). The precision is
    the model's policy (models/precision.py: frozen weights bf16, trainable ones fp32 under autocast), so
    DeepSpeed's own bf16 / fp16 modes are switched off in the returned config (they would cast every weight
    to 16 bits). fp16 is refused (no loss scaling in this project)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DeepSpeed config not found: {path}")
    with open(path) as f:
        try:
            ds = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"DeepSpeed config {path} is not valid JSON: {e}") from e
    if (ds.get("fp16") or {}).get("enabled") is True:
        raise ValueError(f"DeepSpeed config {path} enables fp16: this project trains in bf16 or fp32 (set "
                         "\"fp16\": {\"enabled\": false} and \"bf16\": {\"enabled\": \"auto\"})")
    bf16 = (ds.get("bf16") or {}).get("enabled", False)
    if bf16 not in (True, False, "auto"):
        raise ValueError(f"DeepSpeed config {path}: bf16.enabled must be true, false or \"auto\", got {bf16!r}")
    if bf16 == "auto":
        run = resolve_precision(precision)
    else:
        run = "bf16" if bf16 else "fp32"
        if precision != "auto" and precision != run:
            raise ValueError(f"DeepSpeed config {path} sets bf16.enabled={str(bf16).lower()} but model.precision is "
                             f"{precision!r}: set one of them to match (or bf16.enabled to \"auto\")")
    for key in ("bf16", "fp16"):
        ds[key] = {"enabled": False}
    return ds, run


def use_deepspeed(cfg, json_path: str) -> None:
    """Turn an mmengine config into a FlexibleRunner + DeepSpeed one. The config's batch size, gradient
    accumulation and clipping win over the json's (a mismatch is reported); the optimizer keeps its
    param-wise settings (no weight decay on norms, biases and embedding rows); the json's precision becomes
    the model's (`read_deepspeed_json`)."""
    ds, precision = read_deepspeed_json(json_path, cfg.model.get("precision", "auto"))
    cfg.model.precision = precision
    print(f"[train] precision {precision}" + (" (frozen weights bf16, trainable fp32, autocast; DeepSpeed's own "
                                              "bf16 mode off)" if precision == "bf16" else ""))
    optim = cfg.optim_wrapper
    ours = {"train_micro_batch_size_per_gpu": cfg.train_dataloader.batch_size,
            "gradient_accumulation_steps": optim.get("accumulative_counts", 1),
            "gradient_clipping": (optim.get("clip_grad") or {}).get("max_norm", 1.0)}
    for key, value in ours.items():
        if ds.get(key, "auto") not in ("auto", value):
            print(f"[train] {json_path}: {key}={ds[key]} replaced by the config's {value}")
        ds.pop(key, None)
    cfg.strategy = dict(type="DeSa2VADeepSpeedStrategy", config=ds, exclude_frozen_parameters=True, **ours)
    cfg.optim_wrapper = dict(type="DeepSpeedOptimWrapper", optimizer=optim.optimizer,
                             paramwise_cfg=optim.get("paramwise_cfg"))
    cfg.runner_type = "FlexibleRunner"


def _slurm_to_torch_env() -> None:
    """The variables torch.distributed reads, from Slurm's (as mmengine's slurm start-up does)."""
    import subprocess

    os.environ.setdefault("MASTER_ADDR", subprocess.getoutput(
        f"scontrol show hostname {os.environ['SLURM_NODELIST']} | head -n1"))
    os.environ.setdefault("MASTER_PORT", "29500")
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")


def init_distributed_without_gpus(cfg, launcher: str, deepspeed: bool) -> None:
    """mmengine's start-up calls torch.cuda.set_device unconditionally: on a machine without GPUs the
    process group is started here with gloo instead (mmengine then finds it started), and DDP gets no
    device ids."""
    if launcher == "none" or torch.cuda.is_available():
        return
    if launcher == "slurm":
        _slurm_to_torch_env()
    if deepspeed:
        import deepspeed as ds

        ds.init_distributed(dist_backend="gloo")
    elif not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")
        wrapper = dict(cfg.get("model_wrapper_cfg") or {})
        wrapper.setdefault("type", "MMDistributedDataParallel")
        wrapper["device_ids"] = None
        cfg.model_wrapper_cfg = wrapper
