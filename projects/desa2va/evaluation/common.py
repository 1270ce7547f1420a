"""What every evaluation script shares: distributed set-up, model loading, the shard/merge loop with a
progress bar, the ground-truth audit, outputs (`results.jsonl`, `metrics.json`) and the summary table.

Scales: `results.jsonl` holds per-sample values as fractions (1.0 = perfect: J, F, A, R, iou);
`metrics.json` holds every summary score x100 (`percent`), as the papers and the official toolkits print
them, and counts as integers."""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist

from ..datasets.template import referring_question
from ..inference.video import predict
from .sharding import merge, run_shard


def init_distributed():
    """(rank, world, device) from torchrun's environment; gloo without GPUs, nccl with them."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
    return rank, world, torch.device(f"cuda:{local}" if cuda else "cpu")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def add_override_arg(parser) -> None:
    parser.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE",
                        help="replace saved model settings, e.g. reprompt_iters=0 keyframes=first num_keyframes=3")


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """['reprompt_iters=0', 'keyframes=first'] -> {'reprompt_iters': 0, 'keyframes': 'first'} (Python literals
    where they parse, strings otherwise)."""
    import ast

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--override takes KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def load_model(model_path: str, device: torch.device, **overrides):
    from ..models.builder import load_pretrained

    dtype = "bfloat16" if device.type == "cuda" else "float32"
    return load_pretrained(model_path, torch_dtype=dtype, device=str(device), **overrides)


class Progress:
    """A progress line on rank 0 with samples/s (tqdm when installed)."""

    def __init__(self, rank: int, desc: str):
        self.rank, self.desc, self.t0, self.bar = rank, desc, time.time(), None

    def __call__(self, done: int, total: int) -> None:
        if self.rank != 0:
            return
        try:
            from tqdm import tqdm

            if self.bar is None:
                self.bar = tqdm(total=total, desc=self.desc, unit="sample", file=sys.stderr)
            self.bar.update(1)
        except ImportError:
            rate = done / max(time.time() - self.t0, 1e-9)
            print(f"\r{self.desc}: {done}/{total} ({rate:.2f} samples/s)", end="", file=sys.stderr)


def run_and_merge(keys: Sequence[str], evaluate: Callable[[str], Dict[str, Any]], work_dir: str, rank: int,
                  world: int, resume: bool, desc: str, all_ranks: bool = False) -> List[Dict[str, Any]]:
    """Every rank evaluates its shard; rank 0 (every rank with `all_ranks`) returns the merged records,
    the others []."""
    run_shard(keys, evaluate, work_dir, rank, world, resume=resume, on_progress=Progress(rank, desc))
    barrier()
    return merge(work_dir, keys) if rank == 0 or all_ranks else []


def percent(x: float) -> float:
    """A fraction as metrics.json reports it (x100)."""
    return 100.0 * float(x)


def percents(scores: Dict[str, Any]) -> Dict[str, Any]:
    """The float entries of a metrics dict x100, the others (notes, counts) as they are."""
    return {k: percent(v) if isinstance(v, float) else v for k, v in scores.items()}


class GroundTruthError(RuntimeError):
    """A benchmark whose ground truth is empty for every sample: its scores would mean nothing."""


def audit_ground_truth(entries: Sequence[Tuple[str, Sequence[str], Optional[bool]]], source: str,
                       what: str = "expressions") -> Dict[str, List[str]]:
    """Before anything is scored: `entries` = (sample key, the keys looked up in `source`, has_target:
    True | False (empty on every frame) | None (a key absent from `source`)). Warns naming the samples
    whose ground truth is empty or absent; raises `GroundTruthError`, naming `source` and the keys tried,
    when no sample has any. Returns {'empty': [...], 'absent': [...]}, sorted."""
    empty = sorted(k for k, _, t in entries if t is False)
    absent = sorted(k for k, _, t in entries if t is None)
    if entries and len(empty) + len(absent) == len(entries):
        tried = "; ".join(f"{k} -> {list(keys)}" for k, keys, _ in list(entries)[:5])
        raise GroundTruthError(
            f"the ground truth of every one of the {len(entries)} {what} is empty or absent in {source} "
            f"({len(absent)} with keys not in the file, {len(empty)} empty on every frame); keys tried: {tried}"
            f"{' ...' if len(entries) > 5 else ''}. The scores would mean nothing: check the file and how it is keyed.")
    for names, why in ((empty, "have empty ground truth on every frame"), (absent, f"have keys absent from {source}")):
        if names:
            warnings.warn(f"{len(names)} of {len(entries)} {what} {why} (scored as they are, counted in "
                          f"metrics.json): {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}", stacklevel=2)
    return {"empty": empty, "absent": absent}


def video_question(expression: str) -> str:
    """The question asked for a video referring expression (ReVOS reasoning questions as they are)."""
    return referring_question(expression, video=True)


def mean_scores(rs, prefix: str, keys) -> dict:
    """Means over expressions x100 (J&F = (J + F) / 2); an expression without scores counts as 0."""
    if not rs:
        return {}
    out = {f"{prefix}{k}": percent(np.mean([r.get(k, 0.0) for r in rs])) for k in keys}
    out[f"{prefix}J&F"] = (out[f"{prefix}J"] + out[f"{prefix}F"]) / 2
    return out


def first_mask(model, question: str, rec: Dict[str, Any], **media):
    """`inference.predict` for one referring expression: the mask of its first [SEG] and None as error, or
    None and the failure's reason (no [SEG], an exception). The answer text goes into `rec`."""
    try:
        out = predict(model, question, **media)
    except Exception as e:
        return None, f"{type(e).__name__}: {e}"
    rec["answer"] = out["text"]
    return (out["masks"][0], None) if out["masks"] else (None, "no [SEG] in the answer")


def write_outputs(work_dir: str, records: List[Dict[str, Any]], metrics: Dict[str, Any]) -> None:
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, "results.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    with open(os.path.join(work_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)


def print_table(title: str, rows: Dict[str, Any]) -> None:
    width = max(len(k) for k in rows)
    print(f"\n{title}")
    print("-" * (width + 14))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v:>10.4f}" if isinstance(v, float) else f"{k:<{width}}  {v!s:>10}")


def vis_name(*parts: str) -> str:
    """A file name from a sample's key parts (lower-case, [a-z0-9_] only, bounded length)."""
    import re

    return "_".join(re.sub(r"[^a-z0-9]+", "_", str(p).lower()).strip("_")[:40] for p in parts)


def save_image_vis(work_dir: str, name: str, image, pred, gt, title: str) -> str:
    """`vis/<name>.png`: prediction | ground truth overlays of one image, captioned with `title`."""
    from .. import visualization as vis

    panel = vis.side_by_side(image, [] if pred is None else [pred], [] if gt is None else [gt])
    return vis.save_image(vis.caption(panel, title), os.path.join(work_dir, "vis", f"{name}.png"))


def save_video_vis(work_dir: str, name: str, frames, pred, gt, title: str, fps: float = 6.0) -> List[str]:
    """`vis/<name>.mp4` (prediction | ground truth per frame) and `vis/<name>.png` (a strip of 8 frames);
    pred / gt: (T, H, W) bool or None."""
    from .. import visualization as vis

    panels = [vis.side_by_side(f, [] if pred is None else [pred[t]], [] if gt is None else [gt[t]])
              for t, f in enumerate(frames)]
    base = os.path.join(work_dir, "vis", name)
    return [vis.write_video(panels, base + ".mp4", fps=fps),
            vis.save_image(vis.caption(vis.frame_strip(panels, max_frames=8), title), base + ".png")]
