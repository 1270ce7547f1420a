"""Training-step cost of DeSa2VA and of its Sa2VA mode, measured side by side in one run.

    python benchmarks/train_step.py --config configs/desa2va_4b.py --random-init        # GPU, full size
    python benchmarks/train_step.py --config configs/desa2va_tiny.py                    # CPU, tiny weights

For each mode (`desa2va`, then `sa2va`: the same config with the decoupling off) and each workload, a
batch of the config's batch size made of one kind of sample (the sampler groups batches by kind):
- image: an image in 6 MLLM tiles (5 + thumbnail), 5 referred objects, one SAM-2 frame;
- video: 5 frames (one tile each), 5 objects on every frame;
- text: a text-only QA sample (~60-token question, ~350-token answer; no SAM-2 work).
Each workload runs `--warmup` then `--steps` timed steps of forward, backward and optimizer step with
the config's optimizer wrapper (gradient accumulation off), then one profiled step whose forward is split
by component (vision encoder, LLM, SAM-2 image encoder, decoders, losses, other; exclusive wall time,
device synchronised at each boundary) plus backward and optimizer. FLOPs of a step (forward + backward,
without activation-checkpointing recomputation) come from torch's FlopCounterMode; model FLOPs
utilisation = FLOPs / step time / the GPU's dense bf16 peak (null on CPUs). Peak memory: torch's peak
allocation on GPUs, the process's peak RSS on CPUs.

`--random-init` builds the architecture the config names (InternVL2.5-1B/4B config.json, SAM-2 Hiera-L)
with random weights: no files needed beyond the repository. Without it the config's weight files are
loaded (the tiny configs' `pretrained/tiny` is written when missing). The stage-1 checkpoint is not
needed (D_txt starts from SAM-2's decoder when it is missing: same cost). The real-text embedding cache
is cleared before every step (new texts each step, as in training).

Writes `<out>/train_step_<config>.json` and appends a row to benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

OBJECTS = ["the man", "the woman in red", "the dog on the left", "the white car", "the tree behind the fence"]
WORDS = ("the a person is standing next to red blue car dog tree on in with and of image video left right "
         "small large white black shape circle square near far behind front").split()


# ---------------------------------------------------------------------------------------------- samples
def _image(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _masks(n_obj: int, t: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((n_obj, t, h, w), bool)
    for k in range(n_obj):
        for f in range(t):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            m[k, f, y:y + h // 3, x:x + w // 4] = True
    return m


def build_samples(mllm_path: str, sam_size: int, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """One sample per workload, built by the datasets' own pipeline (tiles, template, tokens, SAM-2 frames)."""
    from projects.desa2va.datasets.base import GroundingDataset, RawSample
    from projects.desa2va.datasets.template import referring_turns

    ds = GroundingDataset(model_path=mllm_path, sam_size=sam_size, max_length=32768)
    g, rng, prng = ds.geometry, np.random.default_rng(seed), random.Random(seed)
    w, h = 5 * g.tile_size, g.tile_size  # a 5:1 image -> 5 tiles + the thumbnail
    img = RawSample("bench/image", "image", referring_turns(OBJECTS, prng), images=[_image(w, h, rng)],
                    masks=_masks(5, 1, h, w, rng), object_texts=list(OBJECTS))
    fw, fh = 854, 480
    turns = referring_turns(OBJECTS, prng, video=True, image_prefix="<image>" * 5 + "\n")
    vid = RawSample("bench/video", "video", turns,
                    images=[_image(fw, fh, rng) for _ in range(5)], masks=_masks(5, 5, fh, fw, rng),
                    object_texts=list(OBJECTS))
    question = " ".join(prng.choice(WORDS) for _ in range(50)) + "?"
    answer = " ".join(prng.choice(WORDS) for _ in range(300)) + "."
    txt = RawSample("bench/text", "text", [(question, answer)])
    out = {r.kind: ds.build(r) for r in (img, vid, txt)}
    if out["image"]["num_tiles"] != 6:
        raise AssertionError(f"image workload has {out['image']['num_tiles']} tiles, expected 6")
    return out


def describe(sample: Dict[str, Any]) -> Dict[str, int]:
    masks = sample["masks"]
    return {"tiles": int(sample["num_tiles"]), "objects": 0 if masks is None else int(masks.shape[0]),
            "frames": 0 if masks is None else int(masks.shape[1])}


def make_batch(sample: Dict[str, Any], batch_size: int, pad_id: int, device: torch.device) -> Dict[str, Any]:
    from projects.desa2va.datasets.base import collate

    data = collate([sample] * batch_size, pad_token_id=pad_id)["data"]
    for k, v in data.items():
        if isinstance(v, torch.Tensor):
            data[k] = v.to(device)
    return data


# ---------------------------------------------------------------------------------------------- running
def build_optim(model, cfg):
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper

    if not MMLogger.check_instance_created("benchmark"):  # no per-parameter option lines
        MMLogger.get_instance("benchmark", log_level="WARNING")

    ow = dict(cfg.optim_wrapper.to_dict() if hasattr(cfg.optim_wrapper, "to_dict") else cfg.optim_wrapper)
    ow.pop("accumulative_counts", None)
    if ow.get("type") == "DeepSpeedOptimWrapper":
        ow["type"] = "OptimWrapper"  # (precision is the model's: models/precision.py)
    return build_optim_wrapper(model, ow)


class DeepSpeedStep:
    """The optimizer-wrapper calls of this benchmark on a DeepSpeed engine: ZeRO as the json says (one
    process), the config's optimizer with its param-wise settings, precision resolved as tools/train.py does."""

    def __init__(self, model, cfg, json_path: str):
        import deepspeed

        from projects.desa2va.engine import read_deepspeed_json

        ds, precision = read_deepspeed_json(json_path, model.precision)
        if precision != model.precision:
            raise ValueError(f"{json_path} trains in {precision} but the model was built in {model.precision}")
        ds.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1,
                  gradient_clipping=float((cfg.optim_wrapper.get("clip_grad") or {}).get("max_norm", 1.0)))
        for k, v in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29591"), ("RANK", "0"), ("WORLD_SIZE", "1"),
                     ("LOCAL_RANK", "0")):
            os.environ.setdefault(k, v)
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
        optimizer = build_optim(model, cfg).optimizer
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)

    def optim_context(self, model):
        return contextlib.nullcontext()  # (the model autocasts itself)

    def backward(self, loss):
        self.engine.backward(loss)

    def step(self):
        self.engine.step()

    def zero_grad(self):
        self.engine.zero_grad()

    def update_params(self, loss):
        self.backward(loss)
        self.step()


def forward(model, optim, data):
    """The loss dict, through the DeepSpeed engine when there is one."""
    return (optim.engine if isinstance(optim, DeepSpeedStep) else model)(data, mode="loss")


def train_step(model, optim, data) -> Dict[str, float]:
    model.text_encoder.cache.clear()
    with optim.optim_context(model):
        losses = forward(model, optim, data)
    loss = sum(v for v in losses.values())
    optim.update_params(loss)
    return {k: float(v.detach()) for k, v in losses.items()}


def profile_step(model, optim, data, device) -> Dict[str, float]:
    """One step with the forward split by component (seconds)."""
    import projects.desa2va.models.objectives as dm

    timer = common.ExclusiveTimer(device)
    mllm, g = model.mllm, model.grounding
    timer.on_module(mllm.vision_model.embeddings, "vision encoder")  # (extract_visual_tokens calls its parts,
    for layer in mllm.vision_model.encoder.layers:                   # not vision_model.forward)
        timer.on_module(layer, "vision encoder")
    timer.on_module(mllm.mlp1, "vision encoder")
    timer.on_module(mllm.causal_lm.model, "LLM")
    timer.on_module(mllm.causal_lm.lm_head, "LLM")
    timer.on_function(g, "encode_frames", "SAM-2 image encoder")
    timer.on_function(g, "decode", "decoders")
    for mod in ("seg_proj", "decoupler", "fusion", "real_text_proj"):
        if hasattr(model.head, mod):
            timer.on_module(getattr(model.head, mod), "decoders")
    # as imported there
    for fn in ("sample_logits_and_targets", "sigmoid_bce", "dice_loss", "focal_loss", "whole_mask_iou"):
        timer.on_function(dm, fn, "losses")
    model.text_encoder.cache.clear()
    try:
        timer.active = True
        t0 = common.now(device)
        timer.push("other")
        with optim.optim_context(model):
            losses = forward(model, optim, data)
        loss = sum(v for v in losses.values())
        timer.pop()
        timer.active = False
        t1 = common.now(device)
        optim.backward(loss)
        t2 = common.now(device)
        optim.step()
        optim.zero_grad()
        t3 = common.now(device)
    finally:
        timer.active = False
        timer.remove()
    split = {f"forward: {k}": round(v, 5) for k, v in sorted(timer.totals.items(), key=lambda kv: -kv[1])}
    split.update({"forward (total)": round(t1 - t0, 5), "backward": round(t2 - t1, 5), "optimizer": round(t3 - t2, 5)})
    return split


def step_flops(model, optim, data) -> int:
    with common.gradient_checkpointing_off(model):
        def fwd_bwd():
            model.text_encoder.cache.clear()
            with optim.optim_context(model):
                losses = forward(model, optim, data)
            sum(v for v in losses.values()).backward()

        flops = common.count_flops(fwd_bwd)
    optim.zero_grad()
    return flops


def run_mode(cfg, mode: str, args, tmp: str, device: torch.device) -> Dict[str, Any]:
    torch.manual_seed(0)
    t = time.perf_counter()
    over = {"precision": args.precision} if args.precision else {}
    model = common.build_model(cfg, mode, args.random_init, tmp, args.workspace, **over).to(device)
    model.train()
    build_s = time.perf_counter() - t
    optim = DeepSpeedStep(model, cfg, args.deepspeed) if args.deepspeed else build_optim(model, cfg)
    mllm_path = os.path.join(args.workspace, model.mllm.model_path)  # config paths are workspace-relative
    samples = build_samples(mllm_path, model.grounding.image_size)
    pad = model.mllm.tokenizer.pad_token_id or 0
    bs = args.batch_size or int(cfg.train_dataloader.batch_size)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    res: Dict[str, Any] = {"mode": mode, "batch_size": bs, "params": n_params, "trainable_params": n_train,
                           "precision": model.precision, "deepspeed": args.deepspeed,
                           "build_s": round(build_s, 2), "workloads": {}}
    peak = common.peak_flops(device)
    for kind in args.workloads:
        data = make_batch(samples[kind], bs, pad, device)
        tokens = int(data["attention_mask"].sum())
        common.reset_peak_memory(device)
        for _ in range(args.warmup):
            train_step(model, optim, data)
        times = []
        for _ in range(args.steps):
            t0 = common.now(device)
            losses = train_step(model, optim, data)
            times.append(common.now(device) - t0)
        mem = common.peak_memory_gb(device)
        split = profile_step(model, optim, data, device)
        flops = step_flops(model, optim, data) if not args.no_flops else None
        step = float(np.median(times))
        w = {"step_s": round(step, 5), "step_s_all": [round(x, 5) for x in times],
             "samples_per_s": round(bs / step, 3), "tokens_per_s": round(tokens / step, 1), "tokens_per_batch": tokens,
             "split_s": split, **mem, "losses": {k: round(v, 4) for k, v in losses.items()},
             "workload": describe(samples[kind])}
        if flops is not None:
            w["tflops_per_step"] = round(flops / 1e12, 4)
            w["achieved_tflops"] = round(flops / step / 1e12, 3)
            w["mfu"] = round(flops / step / peak, 4) if peak else None
        res["workloads"][kind] = w
        print(f"[train_step] {mode:8s} {kind:6s} step {step * 1e3:9.1f} ms  {bs / step:7.2f} samples/s  "
              f"{tokens / step:9.0f} tok/s  peak {mem['peak_memory_gb']:.2f} GB"
              + (f"  MFU {w['mfu']:.3f}" if w.get("mfu") is not None else ""), flush=True)
    del model, optim
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return res


def summarize(result: Dict[str, Any]) -> str:
    parts = []
    modes = result["modes"]
    for kind in result["workloads"]:
        d, s = modes["desa2va"]["workloads"].get(kind), modes["sa2va"]["workloads"].get(kind)
        if d and s:
            mfu = f", MFU {d['mfu']:.2f}" if d.get("mfu") is not None else ""
            parts.append(f"{kind}: DeSa2VA {d['step_s'] * 1e3:.0f} ms ({d['samples_per_s']:.2f} samples/s{mfu}, "
                         f"{d['peak_memory_gb']:.1f} GB) vs Sa2VA {s['step_s'] * 1e3:.0f} ms = "
                         f"x{d['step_s'] / s['step_s']:.2f}")
    return f"{result['config']} (bs {modes['desa2va']['batch_size']}" + \
        (", random init" if result["random_init"] else "") + "): " + "; ".join(parts)


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, "train_step")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's train batch size")
    p.add_argument("--workloads", nargs="+", default=["image", "video", "text"], choices=["image", "video", "text"])
    p.add_argument("--modes", nargs="+", default=["desa2va", "sa2va"], choices=["desa2va", "sa2va"])
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (and MFU)")
    p.add_argument("--precision", default=None, choices=["auto", "bf16", "fp32"], help="default: the config's")
    p.add_argument("--deepspeed", default=None, help="train through DeepSpeed with this json (one process), "
                   "e.g. configs/deepspeed/zero2.json")
    args = p.parse_args(argv)
    device, config, cfg = common.setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        modes = {m: run_mode(cfg, m, args, tmp, device) for m in args.modes}
    result = {"config": os.path.relpath(config, common.ROOT), "random_init": args.random_init,
              "workloads": args.workloads, "steps": args.steps, "warmup": args.warmup, "modes": modes}
    if "desa2va" in modes and "sa2va" in modes:
        result["desa2va_over_sa2va"] = {k: round(modes["desa2va"]["workloads"][k]["step_s"] /
                                                 modes["sa2va"]["workloads"][k]["step_s"], 3) for k in args.workloads}
        summary = summarize(result)
    else:
        summary = f"{result['config']}: " + ", ".join(
            f"{m} ({r['precision']}, bs {r['batch_size']}{', ' + os.path.basename(args.deepspeed) if args.deepspeed else ''}) "
            f"{k} {w['step_s'] * 1e3:.0f} ms, peak {w['peak_memory_gb']:.2f} GB" for m, r in modes.items()
            for k, w in r["workloads"].items())
    name = common.result_name("train_step", config, args.random_init)
    common.write_result(name, result, args.out, summary, not args.no_record, common.device_name(device))
    return result


if __name__ == "__main__":
    main()
