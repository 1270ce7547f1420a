"""Export a training checkpoint to a self-contained folder (LoRA merged, safetensors, configs, tokenizer).

    python tools/convert_to_hf.py CONFIG CHECKPOINT --save-path OUT [--cfg-options k=v ...]

CHECKPOINT: an mmengine checkpoint file, a DeepSpeed checkpoint folder (`iter_N.pth/`), or a work dir
(its latest checkpoint).

The folder loads with `projects.desa2va.models.builder.load_pretrained(OUT)` (evaluation, inference) without the training
config and without trust_remote_code. Every trainable weight and stage 1's frozen W_rt must be in the
checkpoint; a missing or unexpected key is an error naming it.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_model(config: str, cfg_options=None, skip_stage1: bool = True):
    """The config's model as training starts it (frozen weights from the pretrained files it names); the
    stage-1 hand-off is skipped: the checkpoint holds D_txt and W_rt (see `load_trained_model`)."""
    from mmengine.config import Config

    from projects.desa2va.models.builder import build_model as build

    cfg = Config.fromfile(config, lazy_import=False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return build(cfg.model.to_dict(), load_checkpoints=not skip_stage1)


def load_trained_model(config: str, checkpoint: str, cfg_options=None):
    from projects.desa2va.models.checkpoint_io import CheckpointError, read_training_checkpoint

    model = build_model(config, cfg_options)
    state = read_training_checkpoint(checkpoint)
    own = model.state_dict()
    trainable = model.checkpoint_names()  # trainable weights and W_rt (trained in stage 1, frozen since)
    missing = sorted(trainable - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {checkpoint} does not match {config}: missing {missing[:10]}, "
                              f"unexpected {unexpected[:10]}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def main(argv=None) -> int:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--save-path", required=True)
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default=None)
    a = p.parse_args(argv)
    model = load_trained_model(a.config, a.checkpoint, a.cfg_options)
    model.save_pretrained(a.save_path)
    print(f"[convert_to_hf] wrote {a.save_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
