"""Sharding, merging and resuming: one result per key, deterministic order, failures recorded."""
import json

import pytest

from projects.desa2va.evaluation.sharding import merge, read_partials, run_shard, shard

KEYS = [f"img{i}_sent{j}" for i in range(4) for j in range(2)][:7]


def fake_eval(key):
    if key == "img2_sent0":
        raise OSError("corrupt frame")
    return {"iou": len(key) / 100}


def test_every_key_in_exactly_one_shard():
    for world in (1, 2, 3, 8):
        parts = [shard(KEYS, r, world) for r in range(world)]
        flat = [k for p in parts for k in p]
        assert sorted(flat) == sorted(KEYS) and len(flat) == len(set(flat))
    with pytest.raises(ValueError):
        shard(KEYS, 2, 2)


def test_two_ranks_merge_like_one(tmp_path):
    for r in range(2):
        run_shard(KEYS, fake_eval, str(tmp_path / "two"), r, 2)
    run_shard(KEYS, fake_eval, str(tmp_path / "one"), 0, 1)
    two, one = merge(str(tmp_path / "two"), KEYS), merge(str(tmp_path / "one"), KEYS)
    assert two == one and [r["key"] for r in two] == KEYS
    failed = [r for r in two if "error" in r]
    assert len(failed) == 1 and failed[0]["key"] == "img2_sent0" and "corrupt frame" in failed[0]["error"]


def test_resume_after_a_killed_rank_completes_the_set(tmp_path):
    wd = str(tmp_path)
    run_shard(KEYS, fake_eval, wd, 0, 2)
    # rank 1 "crashed" after one sample, leaving a torn line
    first = shard(KEYS, 1, 2)[0]
    with open(tmp_path / "partial" / "rank1.jsonl", "w") as f:
        f.write(json.dumps({"key": first, "iou": 0.5}) + "\n" + '{"key": "img3_se')
    with pytest.raises(RuntimeError, match="have no result .* rerun with --resume"):
        merge(wd, KEYS)
    calls = []
    n = run_shard(KEYS, lambda k: calls.append(k) or fake_eval(k), wd, 1, 2, resume=True)
    assert n == len(shard(KEYS, 1, 2)) - 1 and first not in calls
    merged = merge(wd, KEYS)
    assert [r["key"] for r in merged] == KEYS and merged[KEYS.index(first)]["iou"] == 0.5


def test_resume_with_another_world_size_and_foreign_results(tmp_path):
    wd = str(tmp_path)
    run_shard(KEYS, fake_eval, wd, 0, 3)
    run_shard(KEYS, fake_eval, wd, 0, 1, resume=True)  # a single process finishes what is left
    assert len(read_partials(wd)) == len(KEYS) and len(merge(wd, KEYS)) == len(KEYS)
    with pytest.raises(RuntimeError, match="belong to no requested sample"):
        merge(wd, KEYS[:-1])
