"""GPU memory budget of a stage-2 run per device: parameters, gradients, optimizer states and activations,
from a meta-device build (no weights, no GPU) of the config's architecture, under this project's precision
policy (models/precision.py) and DeepSpeed ZeRO-2.

    python benchmarks/memory_budget.py --config configs/desa2va_4b.py --gpus 8 --gpu-gb 80 --max-length 8192

Counted per device, in GiB:
- frozen weights in bf16 (norms fp32), trainable weights in fp32 (their own master copy, on every rank);
- gradients: fp32; ZeRO-2 keeps this rank's partition (trainable / gpus) plus the reduce buckets
  (`reduce_bucket_size` elements, fp32, from configs/deepspeed/zero2.json);
- AdamW: two fp32 moments of this rank's partition;
- activations of one sample of `--max-length` tokens with gradient checkpointing (the LLM stores each
  layer's input and recomputes one layer at a time in backward; frozen encoders keep no graph): the saved
  layer inputs, one layer's recomputed activations (q, k, v, attention output, the SwiGLU MLP's gate / up /
  product, norms in fp32, LoRA's dropout copies of each adapted input), and the LM loss's logits on the
  labelled tokens (bf16 logits, their fp32 copy and its gradient: 10 bytes per vocabulary entry), for
  `--answer-tokens` labelled tokens (typical) and for every token labelled (worst case). SAM-2 (1024 px, 5
  frames x 5 objects) and the heads are counted from their feature sizes. Estimates: the allocator's
  fragmentation and CUDA/NCCL workspaces (a few GiB) come on top, as `--reserve-gb`.
The largest per-device batch is what fits in `--gpu-gb` minus the fixed part and the reserve.
Writes `<out>/memory_budget_<config>.json` and prints a markdown table (docs/MEMORY.md holds the 4B one).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import torch  # noqa: E402

GIB = 2 ** 30


def counts(cfg) -> Dict[str, Any]:
    from accelerate import init_empty_weights

    from projects.desa2va.models.grounding import build_sam2_model
    from projects.desa2va.models.mllm import InternVLMLLM
    from projects.desa2va.models.mllm.arch_configs import internvl2_5_config
    from projects.desa2va.models.mllm.internvl import LORA_TARGETS

    size = common.mllm_size(cfg.model.mllm.model_path)
    mcfg = internvl2_5_config(size)
    with torch.device("meta"):
        mllm = InternVLMLLM.from_config(mcfg)
    with init_empty_weights():
        sam = build_sam2_model("configs/sam2/sam2_hiera_l.yaml")
    lora = cfg.model.mllm.get("lora") or {}
    r = int(lora.get("r", 0))
    lm = mllm.language_model
    lora_params = sum(r * (m.in_features + m.out_features) for n, m in lm.named_modules()
                      if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in LORA_TARGETS) if r else 0
    emb = lm.get_input_embeddings().weight.numel() + lm.get_output_embeddings().weight.numel()
    full_embeddings = cfg.model.mllm.get("train_embeddings", "grounding_rows") == "full"
    d = mllm.hidden_size
    dec = sum(p.numel() for p in sam.sam_mask_decoder.parameters())
    prompt = int(sam.hidden_dim)
    heads = 2 * (d * prompt + prompt) + (2 * prompt + 2) * 256 + 256 + 257 + (d * prompt + prompt)  # W_t, W_v, gate, W_rt
    trainable = {"LoRA": lora_params, "embeddings + LM head": emb if full_embeddings else 0,
                 "mlp1 (projector)": sum(p.numel() for p in mllm.mlp1.parameters()),
                 "SAM-2 decoder + D_txt": 2 * dec, "heads (W_t, W_v, gate)": heads - (d * prompt + prompt)}
    # the model: the MLLM, SAM-2, D_txt (a copy of SAM-2's decoder) and the heads (W_rt included, frozen)
    total = sum(p.numel() for p in mllm.parameters()) + sum(p.numel() for p in sam.parameters()) + dec + heads
    frozen = total - sum(trainable.values())
    norms = sum(p.numel() for m in list(mllm.modules()) + list(sam.modules())
                if "Norm" in type(m).__name__ for p in m.parameters(recurse=False))
    llm = lm.config
    return {"size": size, "hidden": d, "layers": llm.num_hidden_layers, "intermediate": llm.intermediate_size,
            "kv_dim": llm.num_key_value_heads * (d // llm.num_attention_heads), "vocab": llm.vocab_size,
            "lora_r": r, "trainable": trainable, "trainable_total": sum(trainable.values()),
            "frozen_total": frozen, "frozen_norm_params": norms, "all_params": total}


def budget(c: Dict[str, Any], gpus: int, max_length: int, answer_tokens: int, bucket: float, gpu_gb: float,
           reserve_gb: float) -> Dict[str, Any]:
    d, L, i, kv, V = c["hidden"], c["layers"], c["intermediate"], c["kv_dim"], c["vocab"]
    t = c["trainable_total"]
    fixed = {"frozen weights (bf16, norms fp32)": (2 * (c["frozen_total"] - c["frozen_norm_params"])
                                                   + 4 * c["frozen_norm_params"]) / GIB,
             "trainable weights (fp32)": 4 * t / GIB,
             "gradients (fp32, ZeRO-2 partition + buckets)": (4 * t / gpus + 4 * bucket) / GIB,
             "AdamW moments (fp32, ZeRO-2 partition)": 8 * t / gpus / GIB}
    s = max_length
    saved_inputs = L * s * d * 2
    one_layer = s * (2 * (5 * d + 2 * kv + 3 * i)  # bf16: q, attn out, o out, 2 norm outs, k, v, gate, up, act*up
                     + 4 * 2 * d                   # fp32 RMSNorm internals
                     + (2 * (6 * d + i) if c["lora_r"] else 0))  # LoRA dropout copies of q/k/v/o/gate/up/down inputs
    sam = 5 * 5 * (3 * 256 * 256 * 4 * 4 + 4 * 256 * 64 * 64 * 2)  # 25 (object, frame) decodes: masks, tokens
    logits = lambda n: n * V * 10  # noqa: E731
    act_typ = (saved_inputs + one_layer + sam + logits(answer_tokens)) / GIB
    act_worst = (saved_inputs + one_layer + sam + logits(s)) / GIB
    fixed_gb = sum(fixed.values())
    free = gpu_gb - fixed_gb - reserve_gb
    return {"fixed_gb": {k: round(v, 2) for k, v in fixed.items()}, "fixed_total_gb": round(fixed_gb, 2),
            "activations_per_sample_gb": {"saved layer inputs": round(saved_inputs / GIB, 2),
                                          "one layer recomputed": round(one_layer / GIB, 2),
                                          "SAM-2 decodes": round(sam / GIB, 2),
                                          f"logits, {answer_tokens} labelled tokens": round(logits(answer_tokens) / GIB, 2),
                                          f"logits, all {s} labelled": round(logits(s) / GIB, 2)},
            "per_sample_typical_gb": round(act_typ, 2), "per_sample_worst_gb": round(act_worst, 2),
            "reserve_gb": reserve_gb, "gpu_gb": gpu_gb,
            "max_batch_typical": int(free // act_typ) if free > 0 else 0,
            "max_batch_worst": int(free // act_worst) if free > 0 else 0}


def table(c, b, args) -> str:
    rows = [f"| {k} | {v:.2f} |" for k, v in b["fixed_gb"].items()]
    rows += [f"| activations, one sample: {k} | {v:.2f} |" for k, v in b["activations_per_sample_gb"].items()]
    return "\n".join(["| per device (GiB) | |", "| --- | ---: |"] + rows + [
        f"| fixed total | {b['fixed_total_gb']:.2f} |",
        f"| one sample of {args.max_length} tokens, {args.answer_tokens} labelled / all labelled | "
        f"{b['per_sample_typical_gb']:.2f} / {b['per_sample_worst_gb']:.2f} |",
        f"| largest per-device batch in {args.gpu_gb:.0f} GB ({args.reserve_gb:.0f} GB reserve), typical / worst | "
        f"{b['max_batch_typical']} / {b['max_batch_worst']} |"])


def main(argv=None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/desa2va_4b.py")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu-gb", type=float, default=80.0)
    p.add_argument("--max-length", type=int, default=8192)
    p.add_argument("--answer-tokens", type=int, default=512)
    p.add_argument("--reserve-gb", type=float, default=4.0)
    p.add_argument("--out", default=common.RESULTS_DIR)
    args = p.parse_args(argv)
    config = args.config if os.path.isabs(args.config) else os.path.join(common.ROOT, args.config)
    cfg = common.load_config(config)
    with open(os.path.join(common.ROOT, "configs", "deepspeed", "zero2.json")) as f:
        bucket = float(json.load(f)["zero_optimization"]["reduce_bucket_size"])
    c = counts(cfg)
    b = budget(c, args.gpus, args.max_length, args.answer_tokens, bucket, args.gpu_gb, args.reserve_gb)
    result = {"config": os.path.relpath(config, common.ROOT), "gpus": args.gpus, "max_length": args.max_length,
              "counts": c, "budget": b}
    os.makedirs(args.out, exist_ok=True)
    name = "memory_budget_" + os.path.splitext(os.path.basename(config))[0]
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(result, f, indent=1)
    print(table(c, b, args))
    return result


if __name__ == "__main__":
    main()
