"""Peak memory and speed of video inference against the video's length: `predict` on 20 and on 200 frames.

    python benchmarks/video_memory.py --config configs/desa2va_1b.py --random-init --one-layer   # CPU
    python benchmarks/video_memory.py --config configs/desa2va_1b.py --random-init               # GPU, full size

The model is the config's at SAM-2's 1024 px input, random weights (`--random-init`); `--one-layer` keeps
the real widths but one layer per stack (one block per Hiera stage, two in stage 3; one memory-attention
layer; one ViT and one LLM layer), which leaves SAM-2's video state (64 x 64 memory features, 256 x 256
low-res masks per tracked frame) as it is and makes 200 frames feasible on a CPU. The answer "Sure, [SEG]." is
forced after the real LM head (`inference_latency.force_answer`: a random LLM rarely says [SEG]). Frames are synthetic (--height x --width), made on
access, so only what the pipeline keeps stays in memory. Each length runs in its own process: peak memory is
the process's peak RSS on CPUs, torch's peak allocation on GPUs; the masks returned (T x H x W bool) are
counted apart. Writes `<out>/video_memory_<config>.json` and a row of benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import inference_latency  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ONE_LAYER_HIERA = ["++model.image_encoder.trunk.stages=[1,1,2,1]", "++model.image_encoder.trunk.global_att_blocks=[3]",
                   "++model.memory_attention.num_layers=1"]


class SyntheticVideo:
    """Frames made on access: a bright disc moving across a noisy background."""

    def __init__(self, n: int, h: int, w: int):
        self.n, self.h, self.w = n, h, w

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        img = rng.integers(0, 60, (self.h, self.w, 3), dtype=np.uint8)
        yy, xx = np.ogrid[:self.h, :self.w]
        cx = int(self.w * (0.2 + 0.6 * (i % 50) / 50))
        img[(yy - self.h // 2) ** 2 + (xx - cx) ** 2 <= (self.h // 8) ** 2] = (230, 40, 40)
        return img


def run_length(args, n_frames: int) -> Dict[str, Any]:
    """In this process: build, then one `predict` over n_frames."""
    from projects.desa2va.inference import predict

    device, config, cfg = common.setup(args)
    overrides, random_init = {}, args.random_init
    with tempfile.TemporaryDirectory() as tmp:
        if args.one_layer:  # the real config.json with one layer per stack, random weights
            folder = common.random_init_folder(cfg.model.mllm.model_path, tmp)
            with open(os.path.join(folder, "config.json")) as f:
                mcfg = json.load(f)
            mcfg["vision_config"]["num_hidden_layers"] = mcfg["llm_config"]["num_hidden_layers"] = 1
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump(mcfg, f)
            overrides = dict(mllm={**cfg.model.mllm.to_dict(), "model_path": folder, "load_weights": False},
                             grounding={**cfg.model.grounding.to_dict(), "checkpoint": None,
                                        "hydra_overrides": ONE_LAYER_HIERA})
            random_init = False
        torch.manual_seed(0)
        model = common.build_model(cfg, None, random_init, tmp, args.workspace, **overrides).to(device).eval()
    inference_latency.force_answer(model)  # "Sure, [SEG]." after the real LM head
    frames = SyntheticVideo(n_frames, args.height, args.width)
    common.reset_peak_memory(device)
    t0 = common.now(device)
    out = predict(model, "Please segment the red disc.", frames=frames)
    dt = common.now(device) - t0
    masks = out["masks"][0]
    assert masks.shape == (n_frames, args.height, args.width), masks.shape
    return {"frames": n_frames, "seconds": round(dt, 2), "frames_per_s": round(n_frames / dt, 2),
            "output_masks_mb": round(masks.nbytes / 2 ** 20, 1), **common.peak_memory_gb(device),
            "sam2_image_size": model.grounding.image_size, "memory_window": model.grounding.memory_window()}


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, "video_memory")
    p.add_argument("--frames", type=int, nargs="+", default=[20, 200])
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--one-layer", action="store_true", help="real widths, one layer per stack (CPU)")
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        print("RESULT " + json.dumps(run_length(args, args.child)), flush=True)
        return {}
    runs = []
    for n in args.frames:  # each length in a fresh process: its peak memory is its own
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n)] + [a for a in (argv or sys.argv[1:])]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not line:
            raise RuntimeError(f"video_memory --child {n} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(line[-1][len("RESULT "):]))
        print(f"[video_memory] {n:4d} frames: {runs[-1]['seconds']:.1f} s ({runs[-1]['frames_per_s']:.2f} frames/s), "
              f"peak {runs[-1]['peak_memory_gb']:.3f} GB ({runs[-1]['memory_kind']}), "
              f"masks {runs[-1]['output_masks_mb']} MB", flush=True)
    device, config, _ = common.setup(args)
    first, last = runs[0], runs[-1]
    ratio = round(last["peak_memory_gb"] / first["peak_memory_gb"], 3)
    result = {"config": os.path.relpath(config, common.ROOT), "random_init": args.random_init,
              "one_layer": args.one_layer, "video_size": [args.height, args.width], "runs": runs,
              "peak_ratio_longest_over_shortest": ratio}
    summary = (f"{result['config']}" + (" one layer per stack" if args.one_layer else "") +
               f", SAM-2 {first['sam2_image_size']} px, {args.height}x{args.width} video: " +
               ", ".join(f"{r['frames']} frames peak {r['peak_memory_gb']:.2f} GB ({r['frames_per_s']:.2f} frames/s)"
                         for r in runs) + f"; ratio {ratio}")
    name = "video_memory_" + os.path.splitext(os.path.basename(config))[0] + ("_one_layer" if args.one_layer else "")
    common.write_result(name, result, args.out, summary, not args.no_record, common.device_name(device))
    return result


if __name__ == "__main__":
    main()
