"""Distributed evaluation with nothing lost or duplicated, and resumable.

- Keys (one per (image, sentence) or (video, expression)) are sorted and dealt round-robin:
  rank r gets keys[r::world]. Every key belongs to exactly one rank.
- Each rank appends one JSON line per finished key to `<work_dir>/partial/rank<r>.jsonl` and flushes it,
  so a crash leaves only whole lines (a torn last line is ignored on reading).
- `--resume`: keys found in any partial file (from any earlier world size) are not run again.
- `merge` reads every partial file, keeps the first record per key, refuses an incomplete set (naming
  the missing keys) and returns the records in the order of the given keys, deterministically.
- A sample that fails is recorded with `error` (its reason) instead of being dropped; the metric code
  scores it as an empty prediction.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

PARTIAL_DIR = "partial"


def shard(keys: Iterable[str], rank: int, world: int) -> List[str]:
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    return sorted(set(keys))[rank::world]


def _partial_path(work_dir: str, rank: int) -> str:
    return os.path.join(work_dir, PARTIAL_DIR, f"rank{rank}.jsonl")


def read_partials(work_dir: str) -> Dict[str, Dict[str, Any]]:
    """{key: record} from every partial file (first record per key wins; torn lines are skipped)."""
    done: Dict[str, Dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(work_dir, PARTIAL_DIR, "rank*.jsonl"))):
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                done.setdefault(rec["key"], rec)
    return done


def _drop_torn_lines(path: str) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    good = []
    for line in lines:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        good.append(line if line.endswith("\n") else line + "\n")
    if good != lines:
        with open(path, "w") as f:
            f.writelines(good)


def run_shard(keys: Sequence[str], evaluate: Callable[[str], Dict[str, Any]], work_dir: str, rank: int, world: int,
              resume: bool = False, on_progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Evaluate this rank's keys; returns how many were run. `evaluate(key)` returns a JSON-able record
    (without 'key'); an exception is recorded as {'error': reason}."""
    os.makedirs(os.path.join(work_dir, PARTIAL_DIR), exist_ok=True)
    mine = shard(keys, rank, world)
    path = _partial_path(work_dir, rank)
    if resume:
        done = read_partials(work_dir)
        mine = [k for k in mine if k not in done]
        _drop_torn_lines(path)  # appending after a line cut by a crash would corrupt the next record
    elif os.path.exists(path):
        os.remove(path)
    with open(path, "a") as f:
        for i, key in enumerate(mine):
            try:
                rec = dict(evaluate(key))
            except Exception as e:  # recorded, scored as an empty prediction
                rec = {"error": f"{type(e).__name__}: {e}"}
            rec["key"] = key
            f.write(json.dumps(rec) + "\n")
            f.flush()
            if on_progress:
                on_progress(i + 1, len(mine))
    return len(mine)


def merge(work_dir: str, keys: Sequence[str]) -> List[Dict[str, Any]]:
    """All records in the order of `keys`; an error naming the missing keys when any is absent."""
    done = read_partials(work_dir)
    missing = [k for k in keys if k not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(keys)} samples have no result in {work_dir}/{PARTIAL_DIR} "
                           f"(first: {missing[:5]}); rerun with --resume")
    extra = sorted(set(done) - set(keys))
    if extra:
        raise RuntimeError(f"{len(extra)} results in {work_dir}/{PARTIAL_DIR} belong to no requested sample "
                           f"(first: {extra[:5]}): another run's work_dir?")
    return [done[k] for k in keys]
