"""The data throughput benchmark runs (minimal budget) and reports both workloads."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import data_throughput  # noqa: E402


def test_runs_with_a_minimal_budget(tmp_path):
    result = data_throughput.main(["--samples", "2", "--size", "96", "--out", str(tmp_path), "--no-record"])
    saved = json.loads((tmp_path / "data_throughput.json").read_text())
    assert {k: saved[k] for k in result} == result and saved["commit"] and saved["machine"]
    assert result["image_samples_per_s"] > 0 and result["video_clips_per_s"] > 0
    assert result["image_tiles"] == 1  # a 96 px image is one 448 px tile, no thumbnail
