"""Inference cost: per-query latency and video propagation speed, DeSa2VA (with and without reprompt)
against the Sa2VA mode, in one run.

    python benchmarks/inference_latency.py --config configs/desa2va_4b.py --random-init     # GPU, full size
    python benchmarks/inference_latency.py --config configs/desa2va_tiny.py                 # CPU, tiny weights

- Per query (Sa2VA's setting): a 5-frame 480p clip, every frame a key frame (5 MLLM tiles: 1280 image
  tokens at 448 px), "Please segment the man." -> the answer "Sure, [SEG]." (forced: random weights do
  not answer; the forcing costs nothing, the LM head still runs at every step) -> masks on the 5 frames.
  Median of `--repeats` after a warm-up, and one profiled query split into MLLM (tiles, prefill,
  decoding), SAM-2 image encoder, decoders (+ reprompt), propagation (the SAM-2 video state).
- Propagation: a `--frames`-frame 854x480 clip with 1, 3 and 5 objects (one question each), 5 uniform key
  frames; FPS = frames / time of the SAM-2 video propagation (all objects in one state, each frame encoded
  once); the whole call's time is reported too.
Peak memory per measurement. Frames are in memory (video decoding excluded; it is lazy and per frame).

Modes: `desa2va` (reprompt_iters=1), `desa2va_no_reprompt` (reprompt_iters=0), `sa2va` (decouple off,
no reprompt). The tiny configs run with 5 key frames too (their own setting is every frame).
`--compile` wraps SAM-2's image encoder in torch.compile.
Writes `<out>/inference_latency_<config>.json` and appends a row to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import projects.desa2va.inference.video as video_inference  # noqa: E402
from projects.desa2va.inference.video import predict_video  # noqa: E402

QUESTION = "Please segment the man."
ANSWER = "Sure, [SEG]."
EXTRA_QUESTIONS = ["Please segment the woman in red.", "Please segment the dog.", "Please segment the white car.",
                   "Please segment the tree on the left."]
MODES = {"desa2va": dict(mode="desa2va", reprompt_iters=1),  # mode: the arm (common.ARM_SWITCHES)
         "desa2va_no_reprompt": dict(mode="desa2va", reprompt_iters=0),
         "sa2va": dict(mode="sa2va", reprompt_iters=0)}


class ScriptedHead(torch.nn.Module):
    """The LM head, followed by a push towards the scripted answer's next token (reset per generate call)."""

    def __init__(self, head: torch.nn.Module, script: List[int]):
        super().__init__()
        self.head, self.script, self.step = head, script, 0

    def forward(self, h):
        logits = self.head(h)
        tok = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        bonus = torch.zeros_like(logits)
        bonus[..., tok] = 1e4
        return logits + bonus


def force_answer(model, answer: str = ANSWER) -> None:
    mllm = model.mllm
    tok = mllm.tokenizer
    script = tok(answer, add_special_tokens=False).input_ids + [mllm.eos_token_ids[0]]
    lm = mllm.causal_lm
    head = ScriptedHead(lm.lm_head, script)
    lm.lm_head = head
    generate = mllm.generate

    def scripted_generate(*args, **kwargs):
        head.step = 0
        return generate(*args, **kwargs)

    mllm.generate = scripted_generate


def clip(n: int, w: int = 854, h: int = 480, seed: int = 0) -> List[np.ndarray]:
    """Frames with a moving bright square on noise (the content does not change the cost)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    frames = []
    for t in range(n):
        f = base.copy()
        x = int((w - 160) * t / max(n - 1, 1))
        f[h // 3:h // 3 + 160, x:x + 160] = (230, 200, 180)
        frames.append(f)
    return frames


def profiled_query(model, frames, device) -> Dict[str, float]:
    timer = common.ExclusiveTimer(device)
    g = model.grounding
    timer.on_function(video_inference, "generate_answer", "MLLM (tiles, prefill, decoding)")
    timer.on_function(g, "encode_frames", "SAM-2 image encoder")
    timer.on_function(model, "decode_objects_full", "decoders (+ reprompt)")
    timer.on_function(g, "propagate", "video state (propagation)")
    try:
        timer.active = True
        t0 = common.now(device)
        timer.push("other (preprocessing)")
        predict_video(model, [QUESTION], frames)
        timer.pop()
        total = common.now(device) - t0
    finally:
        timer.active = False
        timer.remove()
    split = {k: round(v, 5) for k, v in sorted(timer.totals.items(), key=lambda kv: -kv[1])}
    split["total"] = round(total, 5)
    return split


def measure_mode(cfg, name: str, args, tmp: str, device) -> Dict[str, Any]:
    torch.manual_seed(0)
    over = dict(MODES[name], keyframes="uniform", num_keyframes=5)
    dtype = "bfloat16" if device.type == "cuda" else "float32"
    model = common.build_model(cfg, over.pop("mode"), args.random_init, tmp, args.workspace, **over)
    if device.type == "cuda":
        model.mllm.to(getattr(torch, dtype))
    model = model.to(device).eval()
    if args.compile:
        enc = model.grounding.sam2_model.image_encoder
        model.grounding.sam2_model.image_encoder = torch.compile(enc)
    force_answer(model)
    encoded = [0]  # frames through SAM-2's image encoder
    model.grounding.sam2_model.image_encoder.register_forward_pre_hook(
        lambda _m, inp: encoded.__setitem__(0, encoded[0] + int(inp[0].shape[0])))
    res: Dict[str, Any] = {"mode": name, **MODES[name]}
    # per query: 5 frames, all key frames
    q_frames = clip(5)
    predict_video(model, [QUESTION], q_frames)  # warm-up
    common.reset_peak_memory(device)
    times = []
    for _ in range(args.repeats):
        t0 = common.now(device)
        out = predict_video(model, [QUESTION], q_frames)
        times.append(common.now(device) - t0)
    encoded[0] = 0
    predict_video(model, [QUESTION], q_frames)
    query_encoded = encoded[0]
    if out[0]["text"] != ANSWER or len(out[0]["masks"]) != 1:
        raise AssertionError(f"{name}: the forced answer did not come out: {out[0]['text']!r}")
    res["query"] = {"latency_s": round(float(np.median(times)), 5), "latency_s_all": [round(t, 5) for t in times],
                    "image_tokens": 5 * model.mllm.num_image_token, "frames_encoded": query_encoded,
                    **common.peak_memory_gb(device),
                    "split_s": profiled_query(model, q_frames, device)}
    print(f"[inference_latency] {name:20s} query {res['query']['latency_s'] * 1e3:8.1f} ms", flush=True)
    # propagation: a long clip, 1 / 3 / 5 objects
    frames = clip(args.frames)
    res["propagation"] = {}
    g = model.grounding
    orig = g.propagate
    for n in args.objects:
        questions = [QUESTION] + EXTRA_QUESTIONS[:n - 1]
        spent = []

        def timed(*a, **k):
            t = common.now(device)
            try:
                return orig(*a, **k)
            finally:
                spent.append(common.now(device) - t)

        g.propagate = timed
        common.reset_peak_memory(device)
        encoded[0] = 0
        t0 = common.now(device)
        try:
            outs = predict_video(model, questions, frames)
        finally:
            g.propagate = orig
        total = common.now(device) - t0
        if sum(len(o["masks"]) for o in outs) != n:
            raise AssertionError(f"{name}: {n} objects asked, {sum(len(o['masks']) for o in outs)} masks")
        fps = args.frames / spent[0]
        res["propagation"][str(n)] = {"fps": round(fps, 2), "propagation_s": round(spent[0], 4),
                                      "total_s": round(total, 4), "frames_encoded": encoded[0],
                                      **common.peak_memory_gb(device)}
        print(f"[inference_latency] {name:20s} {n} object(s): {fps:7.2f} FPS propagation, {total:.2f} s in all",
              flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, "inference_latency")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--objects", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--compile", action="store_true", help="torch.compile SAM-2's image encoder")
    args = p.parse_args(argv)
    if any(n < 1 or n > 1 + len(EXTRA_QUESTIONS) for n in args.objects):
        p.error(f"--objects between 1 and {1 + len(EXTRA_QUESTIONS)}")
    device, config, cfg = common.setup(args)
    t = time.time()
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        modes = {m: measure_mode(cfg, m, args, tmp, device) for m in args.modes}
    result = {"config": os.path.relpath(config, common.ROOT), "random_init": args.random_init, "compile": args.compile,
              "frames": args.frames, "objects": args.objects, "repeats": args.repeats, "modes": modes,
              "wall_s": round(time.time() - t, 1)}
    parts = []
    for m, r in modes.items():
        fps = "/".join(f"{r['propagation'][str(n)]['fps']:.1f}" for n in args.objects)
        parts.append(f"{m}: query {r['query']['latency_s'] * 1e3:.0f} ms, propagation {fps} FPS")
    summary = (f"{result['config']}" + (" random init" if args.random_init else "") +
               (" compiled" if args.compile else "") +
               f" ({args.frames} frames 854x480, {'/'.join(map(str, args.objects))} objects): " + "; ".join(parts))
    name = common.result_name("inference_latency", config, args.random_init)
    common.write_result(name, result, args.out, summary, not args.no_record, common.device_name(device))
    return result


if __name__ == "__main__":
    main()
