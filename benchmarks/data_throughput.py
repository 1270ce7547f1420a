"""Data loading throughput per worker: samples/s of building training samples in one process.

    python benchmarks/data_throughput.py [--samples 40] [--size 640] [--out benchmarks/results]

Two workloads on synthetic data written at `--size` px (COCO-like image sizes), with the real InternVL2.5
image geometry (448 px tiles, up to 12 + thumbnail, 256 tokens per tile) and SAM-2's 1024 px input:
- image: RefCOCO-format referring segmentation (decode, tiles, 1024 px frame, masks, tokens);
- video: MeViS-format clips of 5 frames (5 decodes, 5 tiles, 5 x 1024 px frames, masks, tokens).
Writes a JSON result and appends a row to benchmarks/RESULTS.md. Targets: >= 10 image samples/s and
>= 3 video clips/s per worker.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import torch  # noqa: E402

from projects.desa2va.datasets.mevis_revos import RefVOSDataset  # noqa: E402
from projects.desa2va.datasets.refcoco import RefCOCODataset  # noqa: E402
from projects.desa2va.datasets.synthetic import make_synthetic  # noqa: E402


def real_geometry_folder(tmp: str) -> str:
    """An InternVL2.5-1B config.json (real image geometry) with the tiny tokenizer; no weights needed."""
    return common.random_init_folder("InternVL2_5-1B", tmp)


def measure(ds, n: int) -> float:
    ds[0]  # warm-up
    t = time.perf_counter()
    for i in range(n):
        ds[(i + 1) % len(ds)]
    return n / (time.perf_counter() - t)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--out", default=common.RESULTS_DIR)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    a = p.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one DataLoader worker = one process, one thread
    tmp = tempfile.mkdtemp()
    try:
        make_synthetic(tmp, seed=0, num_train_images=max(a.samples // 2, 4), num_val_images=2, num_train_videos=4,
                       num_val_videos=1, frames=8, size=a.size)
        model_path = real_geometry_folder(tmp)
        kw = dict(model_path=model_path, sam_size=1024, on_bad_sample="raise")
        img = RefCOCODataset(data_root=f"{tmp}/refcoco", image_folder=f"{tmp}/refcoco/images", split="train", **kw)
        vid = RefVOSDataset(data_root=f"{tmp}/mevis/train", mode="train", num_frames=5, **kw)
        s = img[0]
        result = {
            "image_size": a.size, "image_tiles": int(s["num_tiles"]), "image_tokens": int(s["input_ids"].numel()),
            "image_samples_per_s": round(measure(img, a.samples), 2),
            "video_clips_per_s": round(measure(vid, a.samples // 2), 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        torch.set_num_threads(threads)  # the caller's (tests run in one process)
    summary = (f"image {a.size}px ({result['image_tiles']} tiles + 1024 px SAM frame): "
               f"{result['image_samples_per_s']} samples/s; video 5 frames: {result['video_clips_per_s']} clips/s")
    common.write_result("data_throughput", result, a.out, summary, not a.no_record, "cpu, 1 thread per worker")
    return result


if __name__ == "__main__":
    main()
