"""tools/quickstart.py end to end, shortened (2 iterations per stage, 2 samples per split): it trains both
stages through dist.sh, evaluates before and after with the evaluation scripts, and writes the summary and
the overlays. (The full run's learning targets are measured by the quickstart itself: README, issue 6.)"""
import json
import os
import sys

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import make_synthetic_data  # noqa: E402
import quickstart  # noqa: E402


def test_quickstart_runs_every_stage(tmp_path, tiny_pretrained, monkeypatch, capsys):
    (tmp_path / "pretrained").mkdir()
    os.symlink(tiny_pretrained, tmp_path / "pretrained" / "tiny")
    make_synthetic_data.main(["--out", str(tmp_path / "data" / "synthetic"), "--train-images", "8",
                              "--val-images", "2", "--train-videos", "2", "--val-videos", "1", "--frames", "4"])
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setenv("PORT", "29551")
    monkeypatch.chdir(ROOT)
    assert quickstart.main(["--workspace", str(tmp_path), "--stage1-iters", "2", "--stage2-iters", "2",
                            "--limit", "2"]) == 0
    out = tmp_path / "work_dirs" / "quickstart"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("image_ciou", "image_giou", "video_jf"):
        assert 0.0 <= summary[key] <= 1.0 and 0.0 <= summary["before"][key] <= 1.0
    # two evaluated sentences and one video, before and after
    for when in ("eval_before", "eval_after"):
        assert len((out / when / "refcoco_val" / "results.jsonl").read_text().splitlines()) == 2
        assert (out / when / "mevis_valid_u" / "metrics.json").is_file()
    assert os.path.isdir(out / "stage1" / "iter_2.pth") and os.path.isdir(out / "stage2" / "iter_2.pth")
    assert (out / "model" / "desa2va_config.json").is_file()
    pngs = summary["overlays"]
    assert sorted(os.path.splitext(p)[1] for p in pngs if p.startswith("overlay_video_")) == [".mp4", ".png"]
    assert sum(p.startswith("overlay_image_") for p in pngs) == 2  # --vis of the two evaluated sentences
    assert Image.open(out / pngs[0]).size[0] >= 128
    printed = capsys.readouterr().out
    assert "image cIoU" in printed and "video J&F" in printed and "untrained" in printed
