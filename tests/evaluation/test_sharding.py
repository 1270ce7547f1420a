"""Sharding, merging and resuming: one result per key, deterministic order, failures recorded, torn lines
from a killed process ignored."""
import json
import os

import pytest

from projects.desa2va.evaluation.sharding import merge, read_partials, run_shard, shard

KEYS = [f"img{i}_sent{j}" for i in range(4) for j in range(2)][:7]


def fake_eval(key):
    if key == "img2_sent0":
        raise OSError("corrupt frame")
    return {"iou": len(key) / 100}


def lines(path):
    return [json.loads(x) for x in open(path)]


def test_every_key_in_exactly_one_shard():
    for world in (1, 2, 3, 8):
        parts = [shard(KEYS, r, world) for r in range(world)]
        flat = [k for p in parts for k in p]
        assert sorted(flat) == sorted(KEYS) and len(flat) == len(set(flat))
    assert shard(["c", "a", "b", "a"], 0, 2) == ["a", "c"] and shard(["c", "a", "b", "a"], 1, 2) == ["b"]
    assert shard(KEYS, 0, 1) == sorted(KEYS)
    for rank, world in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match=rf"^rank {rank} outside world size {world}$"):
            shard(KEYS, rank, world)


def test_a_shard_writes_one_line_per_key_and_records_failures(tmp_path):
    progress = []
    n = run_shard(KEYS, fake_eval, str(tmp_path), 0, 2, on_progress=lambda i, total: progress.append((i, total)))
    mine = shard(KEYS, 0, 2)
    assert n == len(mine) == 4 and progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert os.listdir(tmp_path / "partial") == ["rank0.jsonl"]
    recs = lines(tmp_path / "partial" / "rank0.jsonl")
    assert [r["key"] for r in recs] == mine
    assert recs[0] == {"key": mine[0], "iou": len(mine[0]) / 100}
    failed = [r for r in recs if "error" in r]
    assert failed == [{"key": "img2_sent0", "error": "OSError: corrupt frame"}]


def test_two_ranks_merge_like_one(tmp_path):
    for r in range(2):
        run_shard(KEYS, fake_eval, str(tmp_path / "two"), r, 2)
    run_shard(KEYS, fake_eval, str(tmp_path / "one"), 0, 1)
    two, one = merge(str(tmp_path / "two"), KEYS), merge(str(tmp_path / "one"), KEYS)
    assert two == one and [r["key"] for r in two] == KEYS
    assert merge(str(tmp_path / "one"), KEYS[::-1]) == one[::-1]  # in the order asked for


def test_a_new_run_replaces_its_rank_file(tmp_path):
    run_shard(KEYS, fake_eval, str(tmp_path), 0, 1)
    assert run_shard(KEYS, lambda k: {"iou": 0.0}, str(tmp_path), 0, 1) == len(KEYS)  # no --resume: from scratch
    assert [r["iou"] for r in lines(tmp_path / "partial" / "rank0.jsonl")] == [0.0] * len(KEYS)


def test_resume_after_a_killed_rank_completes_the_set(tmp_path):
    wd = str(tmp_path)
    run_shard(KEYS, fake_eval, wd, 0, 2)
    # rank 1 "crashed" after one sample, leaving a torn line
    first = shard(KEYS, 1, 2)[0]
    with open(tmp_path / "partial" / "rank1.jsonl", "w") as f:
        f.write(json.dumps({"key": first, "iou": 0.5}) + "\n" + '{"key": "img3_se')
    with pytest.raises(RuntimeError, match=r"^2 of 7 samples have no result in .*/partial \(first: \['img1_sent1', "
                                           r"'img2_sent1'\]\); rerun with --resume$"):
        merge(wd, KEYS)
    calls = []
    n = run_shard(KEYS, lambda k: calls.append(k) or fake_eval(k), wd, 1, 2, resume=True)
    assert n == len(shard(KEYS, 1, 2)) - 1 and first not in calls
    merged = merge(wd, KEYS)
    assert [r["key"] for r in merged] == KEYS and merged[KEYS.index(first)]["iou"] == 0.5
    assert all(line.endswith("}\n") for line in open(tmp_path / "partial" / "rank1.jsonl"))  # the torn line is gone


def test_resume_after_a_line_cut_before_its_newline(tmp_path):
    """A whole record whose newline was not written is kept, and the next record starts on a new line."""
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "rank0.jsonl").write_text(json.dumps({"key": KEYS[0], "iou": 0.9}))
    run_shard(KEYS, fake_eval, str(tmp_path), 0, 1, resume=True)
    recs = lines(tmp_path / "partial" / "rank0.jsonl")
    assert [r["key"] for r in recs] == sorted(KEYS) and recs[0]["iou"] == 0.9


def test_resume_with_another_world_size_and_foreign_results(tmp_path):
    wd = str(tmp_path)
    run_shard(KEYS, fake_eval, wd, 0, 3)
    assert run_shard(KEYS, fake_eval, wd, 0, 1, resume=True) == len(KEYS) - len(shard(KEYS, 0, 3))
    assert len(read_partials(wd)) == len(KEYS) and len(merge(wd, KEYS)) == len(KEYS)
    with pytest.raises(RuntimeError, match=r"^1 results in .*/partial belong to no requested sample \(first: "
                                           r"\['img3_sent0'\]\): another run's work_dir\?$"):
        merge(wd, KEYS[:-1])
    assert run_shard(KEYS, fake_eval, wd, 0, 1, resume=True) == 0  # nothing left to do


def test_torn_lines_anywhere_are_skipped_and_dropped(tmp_path):
    (tmp_path / "partial").mkdir()
    path = tmp_path / "partial" / "rank0.jsonl"
    path.write_text(json.dumps({"key": KEYS[0], "iou": 1}) + '\n{"key": "x' + "\n" + json.dumps({"key": KEYS[1], "iou": 2}))
    assert set(read_partials(str(tmp_path))) == {KEYS[0], KEYS[1]}
    run_shard(KEYS, fake_eval, str(tmp_path), 0, 1, resume=True)
    recs = lines(path)
    assert [r["key"] for r in recs[:2]] == KEYS[:2] and len(recs) == len(KEYS)


def test_merge_names_at_most_five_keys(tmp_path):
    keys = [f"k{i}" for i in range(8)]
    run_shard(keys[:1], lambda k: {}, str(tmp_path), 0, 1)
    with pytest.raises(RuntimeError, match=r"^7 of 8 samples .*\(first: \['k1', 'k2', 'k3', 'k4', 'k5'\]\)"):
        merge(str(tmp_path), keys)
    run_shard(keys, lambda k: {}, str(tmp_path), 0, 1)
    with pytest.raises(RuntimeError, match=r"^7 results .*\(first: \['k1', 'k2', 'k3', 'k4', 'k5'\]\)"):
        merge(str(tmp_path), keys[:1])


def test_read_partials_first_record_wins_and_other_files_are_ignored(tmp_path):
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "rank0.jsonl").write_text(json.dumps({"key": "a", "v": 0}) + "\nnot json\n")
    (tmp_path / "partial" / "rank1.jsonl").write_text(json.dumps({"key": "a", "v": 1}) + "\n" +
                                                      json.dumps({"key": "b", "v": 1}) + "\n")
    (tmp_path / "partial" / "notes.txt").write_text(json.dumps({"key": "c", "v": 2}) + "\n")
    assert read_partials(str(tmp_path)) == {"a": {"key": "a", "v": 0}, "b": {"key": "b", "v": 1}}
    assert read_partials(str(tmp_path / "nowhere")) == {}
