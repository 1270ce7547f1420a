"""Write tiny random-initialised stand-ins of the pretrained weights, in the real formats.

    python tools/make_tiny_pretrained.py --out pretrained/tiny [--seed 0]

writes
  <out>/InternVL2_5-tiny/   config.json (InternVL2.5 schema), model.safetensors (real key names),
                            a byte-level BPE tokenizer trained here (Hugging Face files, ChatML and
                            InternVL special tokens), generation_config.json
  <out>/sam2_tiny.pt        {"model": state_dict} of SAM-2 built from
                            projects/desa2va/models/grounding/configs/sam2_tiny.yaml
Deterministic for a given seed. The project's loaders read these exactly as they read
pretrained/InternVL2_5-4B and pretrained/sam2_hiera_large.pt.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from projects.desa2va.common import special_tokens as st  # noqa: E402
from projects.desa2va.models.checkpoint_io import write_safetensors_folder  # noqa: E402
from projects.desa2va.models.grounding import build_sam2_model  # noqa: E402
from projects.desa2va.models.mllm import InternVLMLLM  # noqa: E402
from projects.desa2va.models.mllm.arch_configs import tiny_internvl_config  # noqa: E402

SAM2_TINY_CONFIG = "sam2_tiny.yaml"
MLLM_DIR = "InternVL2_5-tiny"
SAM2_FILE = "sam2_tiny.pt"
LLM_INIT_STD = 0.1

# Qwen2's pre-tokenisation pattern (splits digits, words, punctuation, whitespace runs).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|endoftext|>", st.IM_START, st.IM_END, st.IMG_START, st.IMG_END, st.IMG_CONTEXT,
                  "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
SYSTEM_MESSAGE = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"

_WORDS = """the a an of in on at to is are it this that there what which where how many please can you
segment segmentation mask object objects shape shapes image video frame frames describe answer question
sure yes no red green blue yellow purple orange white black gray circle square triangle star rectangle
left right top bottom above below middle center largest smallest biggest big small large moving moves
stops still up down first last one two three four five six seven eight nine ten and or with without
here is result find show me output corresponding referring expression describe briefly what happens"""


def _corpus():
    words = _WORDS.split()
    lines = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
    lines += [f"Please segment the {c} {s}." for c in words[40:52] for s in words[52:58]]
    lines += [f"Sure, it is [SEG]. There are {n} shapes." for n in words[83:93]]
    lines += [SYSTEM_MESSAGE, "Hello! How can I help you? 0123456789 ,.;:!?'\"()[]{}<>/-_"]
    return lines * 3


def build_tokenizer(vocab_size: int = 600):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS[:3], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    hf = Qwen2TokenizerFast(tokenizer_object=tok, eos_token=st.IM_END, pad_token="<|endoftext|>",
                            unk_token=None, bos_token=None, errors="replace", model_max_length=4096)
    hf.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[3:]}, replace_additional_special_tokens=False)
    return hf


def write_internvl(out_dir: str, seed: int) -> str:
    folder = os.path.join(out_dir, MLLM_DIR)
    os.makedirs(folder, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(folder)
    cfg = tiny_internvl_config(vocab_size=len(tokenizer))
    cfg["llm_config"]["bos_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    cfg["llm_config"]["eos_token_id"] = tokenizer.convert_tokens_to_ids(st.IM_END)
    torch.manual_seed(seed)
    model = InternVLMLLM.from_config(cfg)
    with torch.no_grad():
        for layer in model.vision_model.encoder.layers:  # InternViT's layer scales are ~0.1 in practice
            layer.ls1.fill_(0.1)
            layer.ls2.fill_(0.1)
        # With transformers' default std 0.02 a random 128-d LLM attends almost uniformly, so the [SEG]
        # states of different questions are near-identical (cosine ~0.98) and its logits too flat to
        # express a confident answer. std 0.1 gives token-specific states (cosine ~0.4), like a trained LLM.
        for p in model.language_model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, LLM_INIT_STD)
    write_safetensors_folder(model.state_dict(), folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [cfg["llm_config"]["eos_token_id"]], "max_new_tokens": 64}, f, indent=2)
    return folder


def write_sam2(out_dir: str, seed: int) -> str:
    torch.manual_seed(seed)
    model = build_sam2_model(SAM2_TINY_CONFIG)
    path = os.path.join(out_dir, SAM2_FILE)
    torch.save({"model": model.state_dict()}, path)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pretrained/tiny")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print("[make_tiny_pretrained] InternVL2.5-format MLLM:", write_internvl(args.out, args.seed))
    print("[make_tiny_pretrained] SAM-2 checkpoint:", write_sam2(args.out, args.seed),
          f"(config: {SAM2_TINY_CONFIG})")


if __name__ == "__main__":
    main()
