"""Write the built-in synthetic benchmark (RefCOCO, MeViS and LLaVA formats).

    python tools/make_synthetic_data.py --out data/synthetic [--seed 0] [--scale 1.0]

See projects/desa2va/datasets/synthetic.py for what is written. Deterministic for a seed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from projects.desa2va.datasets.synthetic import make_synthetic  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/synthetic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-images", type=int, default=500)
    p.add_argument("--val-images", type=int, default=100)
    p.add_argument("--train-videos", type=int, default=60)
    p.add_argument("--val-videos", type=int, default=20)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every count by this")
    a = p.parse_args(argv)
    t = time.time()
    stats = make_synthetic(a.out, seed=a.seed, num_train_images=int(a.train_images * a.scale),
                           num_val_images=int(a.val_images * a.scale), num_train_videos=int(a.train_videos * a.scale),
                           num_val_videos=int(a.val_videos * a.scale), frames=a.frames, size=a.size)
    print(f"[make_synthetic_data] {a.out} in {time.time() - t:.1f} s: {json.dumps(stats)}")
    return stats


if __name__ == "__main__":
    main()
