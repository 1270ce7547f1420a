"""Train with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [PATH|auto]] [--deepspeed JSON]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm]

With --deepspeed the run uses mmengine's FlexibleRunner with DeepSpeed (configs/deepspeed/zero2.json on
GPUs, zero2_cpu.json without); `tools/dist.sh` passes it by default. Exits non-zero when training fails
(unlike the `xtuner train` CLI, which always exits 0).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a checkpoint path, or 'auto' for the latest in the work dir")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None,
                   help="override config settings, e.g. train_cfg.max_iters=10")
    p.add_argument("--deepspeed", default=None, help="DeepSpeed json (e.g. configs/deepspeed/zero2.json)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    return p.parse_args(argv)


PATH_KEYS = ("data_root", "image_folder", "video_folder", "data_file", "annotation_file", "model_path")


def missing_paths(node, where="train_dataloader"):
    """Every dataset path in the config that does not exist (checked before any model is loaded)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in PATH_KEYS and isinstance(v, str) and v and not os.path.exists(v):
                out.append(f"{where}.{k} = {v}")
            else:
                out += missing_paths(v, f"{where}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out += missing_paths(v, f"{where}[{i}]")
    return out


def prompt_mismatches(cfg) -> list:
    """Datasets whose chat template or system message differ from the model's (stage 2): training would
    teach one prompt and inference ask with another. Templates compare by format (qwen_chat = internvl2_5)."""
    from projects.desa2va.common.chat_template import INTERNVL2_5_SYSTEM, get_template

    model = cfg.get("model", {})
    if model.get("stage", 2) == 1 or "train_dataloader" not in cfg:
        return []
    want = (get_template(model.get("chat_template", "internvl2_5")), model.get("system_prompt", INTERNVL2_5_SYSTEM))
    ds = cfg.train_dataloader.get("dataset", {})
    common = ds.get("common") or {}
    out = []
    flat = [d for g in ds.get("datasets") or [] for d in (g if isinstance(g, (list, tuple)) else [g])]
    for i, d in enumerate(flat or [ds]):
        got = {**common, **d}
        have = (get_template(got.get("chat_template", "internvl2_5")), got.get("system", INTERNVL2_5_SYSTEM))
        if have != want:
            out.append(f"dataset {i} ({d.get('type')}): chat_template {got.get('chat_template', 'internvl2_5')!r}, "
                       f"system {got.get('system', INTERNVL2_5_SYSTEM)!r} vs the model's chat_template "
                       f"{model.get('chat_template', 'internvl2_5')!r}, system_prompt "
                       f"{model.get('system_prompt', INTERNVL2_5_SYSTEM)!r}")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # mmengine checkpoints hold non-tensors
    from mmengine.config import Config
    from mmengine.runner import Runner

    if not os.path.isfile(args.config):
        print(f"config not found: {args.config}", file=sys.stderr)
        return 2
    cfg = Config.fromfile(args.config, lazy_import=False)  # configs call projects.desa2va.config_builders
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    name = os.path.splitext(os.path.basename(args.config))[0]
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or os.path.join("work_dirs", name)
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    missing = missing_paths(cfg.get("train_dataloader", {}))
    if missing:
        print("data paths not found (nothing was loaded):\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    mismatched = prompt_mismatches(cfg)
    if mismatched:
        print("the training prompts differ from the model's (set the datasets' common.chat_template / system as "
              "model.chat_template / system_prompt):\n  " + "\n  ".join(mismatched), file=sys.stderr)
        return 2
    from projects.desa2va.engine import init_distributed_without_gpus, use_deepspeed

    if args.deepspeed:
        use_deepspeed(cfg, args.deepspeed)
    init_distributed_without_gpus(cfg, args.launcher, deepspeed=bool(args.deepspeed))
    if cfg.get("runner_type") == "FlexibleRunner":
        from mmengine.runner import FlexibleRunner

        runner = FlexibleRunner.from_cfg(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
