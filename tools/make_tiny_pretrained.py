"""Write tiny stand-ins of the pretrained weights, in the real formats: random-initialised, or pre-trained
(`--foundations`: what the CPU proxy starts from, see tools/tiny_foundations.py).

    python tools/make_tiny_pretrained.py --out pretrained/tiny [--seed 0]                 # random (tests)
    python tools/make_tiny_pretrained.py --out pretrained/tiny --install                  # the committed ones
    python tools/make_tiny_pretrained.py --out assets/foundations --foundations           # pre-train (~24 min)

writes
  <out>/InternVL2_5-tiny/   config.json (InternVL2.5 schema; ViT patch 16, or 8 with --foundations),
                            model.safetensors (real key names),
                            a byte-level BPE tokenizer trained here (Hugging Face files, ChatML and
                            InternVL special tokens), generation_config.json
  <out>/sam2_tiny.pt        {"model": state_dict} of SAM-2 built from
                            projects/desa2va/models/grounding/configs/sam2_tiny.yaml (random mode only)
  <out>/sam2_tiny_128px.pt  the same of sam2_tiny_128px.yaml, the proxy's SAM-2 (random, or pre-trained)
  <out>/foundations.json    (--foundations) the settings, the held-out figures and the wall times; a
                            later call with the same settings and code returns it without training again
                            (`ensure_foundations`); `install_foundations` copies such a folder over
                            random stand-ins.
Deterministic for a given seed (bit for bit with one thread; with several, PyTorch's CPU kernels may
differ in the last bits). The project's loaders read these exactly as they read
pretrained/InternVL2_5-4B and pretrained/sam2_hiera_large.pt, and --foundations trains and evaluates
them after loading through those loaders.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from projects.desa2va.common import special_tokens as st  # noqa: E402
from projects.desa2va.models.checkpoint_io import write_safetensors_folder  # noqa: E402
from projects.desa2va.models.grounding import build_sam2_model  # noqa: E402
from projects.desa2va.models.mllm import InternVLMLLM  # noqa: E402
from projects.desa2va.models.mllm.arch_configs import tiny_internvl_config  # noqa: E402

import tiny_foundations  # noqa: E402

SAM2_TINY_CONFIG = "sam2_tiny.yaml"
SAM2_PROXY_CONFIG = "sam2_tiny_128px.yaml"  # the proxy's SAM-2 (128 px, prompt width 64): the foundations'
SAM2_PROXY_FILE = "sam2_tiny_128px.pt"
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


def write_internvl(out_dir: str, seed: int, patch_size: int = 16) -> str:
    folder = os.path.join(out_dir, MLLM_DIR)
    os.makedirs(folder, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(folder)
    cfg = tiny_internvl_config(vocab_size=len(tokenizer), patch_size=patch_size)
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


def write_sam2(out_dir: str, seed: int, config: str = SAM2_TINY_CONFIG, name: str = SAM2_FILE) -> str:
    torch.manual_seed(seed)
    model = build_sam2_model(config)
    path = os.path.join(out_dir, name)
    torch.save({"model": model.state_dict()}, path)
    return path


# ---------------------------------------------------------------------------------------------- foundations
FOUNDATIONS_FILE = "foundations.json"
STAND_INS_FILE = "stand_ins.json"  # marks a folder of random stand-ins written on purpose (random mode)
# the foundations the project ships (written by `--out assets/foundations --foundations`, ~8 MB)
ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "foundations")
PROXY_PATCH = 8  # the foundations' ViT patch: 64 visual tokens per 128 px tile (the random stand-ins: 16)
FOUNDATION_DEFAULTS = {"sam2_encoder_iters": 600, "sam2_probe_weight": 0.5, "sam2_image_iters": 1500,
                       "sam2_clip_iters": 800, "vision_iters": 1500, "vision_dense_weight": 1.0, "mllm_iters": 6000,
                       "eval_images": 100, "eval_clips": 20}
_CODE = ("tools/tiny_foundations.py", "projects/desa2va/datasets/synthetic.py",  # the recipe and its data
         "projects/desa2va/models/grounding/sam_training.py",
         "projects/desa2va/models/grounding/configs/sam2_tiny_128px.yaml")


def code_hash() -> str:
    """Of the files that determine the foundations (a change of any retrains them in `ensure_foundations`)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for rel in _CODE:
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def pretrain_internvl(folder: str, iters: int, seed: int, vision_iters: int = 0, dense_weight: float = 0.0) -> dict:
    """Load the folder with the project's loader (every part trainable), pre-train its ViT alone for
    `vision_iters` steps (then frozen), train it on scene questions for `iters` and write its weights back
    in the same layout: the checkpoint's own rows only (not the grounding tokens that
    loading adds; the tokenizer files are untouched)."""
    from projects.desa2va.models.checkpoint_io import read_safetensors_folder

    original = read_safetensors_folder(folder)
    mllm = InternVLMLLM(folder, freeze_vision=False, freeze_llm=False, freeze_projector=False)
    times = tiny_foundations.pretrain_vision(mllm, vision_iters, seed, dense_weight=dense_weight) if vision_iters else {}
    times.update(tiny_foundations.pretrain_mllm(mllm, iters, seed, train_vision=not vision_iters))
    trained = mllm.merged_state_dict()
    if set(trained) != set(original):
        raise RuntimeError(f"pre-trained MLLM keys differ from {folder}'s: "
                           f"{sorted(set(trained) ^ set(original))[:5]}")
    state = {k: trained[k][:original[k].shape[0]].detach().contiguous() for k in original}  # vocabulary rows
    wrong = [k for k in original if state[k].shape != original[k].shape]
    if wrong:
        raise RuntimeError(f"pre-trained MLLM tensors {wrong[:5]} do not fit {folder}'s shapes")
    write_safetensors_folder(state, folder)
    return times


def pretrain_sam2_file(path: str, image_iters: int, clip_iters: int, seed: int, encoder_iters: int = 0,
                       probe_weight: float = 0.0) -> dict:
    """Train the proxy SAM-2 checkpoint at `path` in place (`tiny_foundations.pretrain_sam2`)."""
    model = build_sam2_model(SAM2_PROXY_CONFIG, path)
    times = tiny_foundations.pretrain_sam2(model, image_iters, clip_iters, seed, encoder_iters=encoder_iters,
                                           probe_weight=probe_weight)
    torch.save({"model": model.state_dict()}, path)
    return times


def evaluate_foundations(out_dir: str, num_images: int = 100, num_clips: int = 20) -> dict:
    """Held-out figures of the files as written, loaded through the project's loaders."""
    from projects.desa2va.models.grounding.sam2_grounding import SAM2Grounding

    grounding = SAM2Grounding(SAM2_PROXY_CONFIG, os.path.join(out_dir, SAM2_PROXY_FILE), mask_selection="best_iou")
    res = tiny_foundations.evaluate_sam2(grounding, num_images, num_clips)
    res.update(tiny_foundations.evaluate_mllm(InternVLMLLM(os.path.join(out_dir, MLLM_DIR)), num_images))
    return res


def write_foundations(out_dir: str, seed: int, settings: dict) -> dict:
    t0 = time.time()
    write_internvl(out_dir, seed, PROXY_PATCH)
    write_sam2(out_dir, seed, SAM2_PROXY_CONFIG, SAM2_PROXY_FILE)
    times = pretrain_sam2_file(os.path.join(out_dir, SAM2_PROXY_FILE), settings["sam2_image_iters"],
                               settings["sam2_clip_iters"], seed, settings["sam2_encoder_iters"],
                               settings["sam2_probe_weight"])
    times.update(pretrain_internvl(os.path.join(out_dir, MLLM_DIR), settings["mllm_iters"], seed,
                                   settings["vision_iters"], settings["vision_dense_weight"]))
    t = time.time()
    figures = evaluate_foundations(out_dir, settings["eval_images"], settings["eval_clips"])
    times["evaluate_s"] = round(time.time() - t, 1)
    record = {"seed": seed, "settings": settings, "code": code_hash(), "figures": figures, "times_s": times,
              "wall_s": round(time.time() - t0, 1), "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d")}
    with open(os.path.join(out_dir, FOUNDATIONS_FILE), "w") as f:
        json.dump(record, f, indent=2)
    return record


def read_record(out_dir: str):
    """foundations.json of a folder, or None."""
    path = os.path.join(out_dir, FOUNDATIONS_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def install_foundations(src: str, dst: str) -> dict:
    """Copy the foundations in `src` into `dst` (e.g. pretrained/tiny), replacing the MLLM folder and
    proxy SAM-2 there (random stand-ins included), unless `dst` already holds them (same foundations.json)."""
    import shutil

    record = read_record(src)
    if record is None:
        raise FileNotFoundError(f"no {FOUNDATIONS_FILE} in {src}: build them with "
                                f"python tools/make_tiny_pretrained.py --out {src} --foundations")
    if read_record(dst) == record and os.path.isfile(os.path.join(dst, SAM2_PROXY_FILE)):
        return record
    os.makedirs(dst, exist_ok=True)
    stale = os.path.join(dst, FOUNDATIONS_FILE)
    for marker in (stale, os.path.join(dst, STAND_INS_FILE)):
        if os.path.isfile(marker):
            os.remove(marker)
    shutil.rmtree(os.path.join(dst, MLLM_DIR), ignore_errors=True)
    shutil.copytree(os.path.join(src, MLLM_DIR), os.path.join(dst, MLLM_DIR))
    shutil.copyfile(os.path.join(src, SAM2_PROXY_FILE), os.path.join(dst, SAM2_PROXY_FILE))
    shutil.copyfile(os.path.join(src, FOUNDATIONS_FILE), stale)  # last: marks the copy complete
    print(f"[make_tiny_pretrained] installed the foundations of {src} in {dst}", flush=True)
    return record


def ensure_tiny(dst: str = "pretrained/tiny") -> Optional[dict]:
    """What the quickstart, the tiny configs' tools and the ablation start from: `dst` made to hold the
    committed foundations (`ASSETS`), installed over an empty folder, older foundations or random stand-ins
    of an earlier checkout; a folder of random stand-ins written on purpose (`STAND_INS_FILE`, this
    script's random mode: tests, smoke runs) is kept, with a warning. Returns the foundations.json in use
    (None for random stand-ins)."""
    if not os.path.isfile(os.path.join(ASSETS, FOUNDATIONS_FILE)):
        raise FileNotFoundError(f"the committed foundations are missing from {ASSETS}: restore them from git, or "
                                f"rebuild them with python tools/make_tiny_pretrained.py --out {ASSETS} --foundations")
    if read_record(dst) is None and os.path.isfile(os.path.join(dst, STAND_INS_FILE)):
        print(f"[make_tiny_pretrained] WARNING: {dst} holds random stand-ins ({STAND_INS_FILE}), not the pre-trained "
              f"foundations: nothing learns as the recorded figures say; remove it to install {ASSETS}", flush=True)
        return None
    return install_foundations(ASSETS, dst)


def ensure_foundations(out_dir: str, seed: int = 0, **settings) -> dict:
    """The pre-trained foundations in `out_dir`: the existing ones when their foundations.json has the same
    seed, settings and code, else written (and trained) now."""
    settings = {**FOUNDATION_DEFAULTS, **settings}
    record = read_record(out_dir)
    if record is not None and os.path.isfile(os.path.join(out_dir, SAM2_PROXY_FILE)):
        if (record.get("seed"), record.get("settings"), record.get("code")) == (seed, settings, code_hash()):
            print(f"[make_tiny_pretrained] foundations in {out_dir} are current ({FOUNDATIONS_FILE})", flush=True)
            return record
    os.makedirs(out_dir, exist_ok=True)
    return write_foundations(out_dir, seed, settings)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="pretrained/tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--foundations", action="store_true", help="pre-train them (tools/tiny_foundations.py)")
    p.add_argument("--install", action="store_true",
                   help=f"copy the committed foundations ({ASSETS}) into --out, over random stand-ins too")
    for key, value in FOUNDATION_DEFAULTS.items():
        p.add_argument("--" + key.replace("_", "-"), type=type(value), default=value,
                       help=f"with --foundations ({value})")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.install:
        if args.foundations:
            p.error("--install copies the committed foundations; --foundations builds them: give one")
        record = install_foundations(ASSETS, args.out)
        print("[make_tiny_pretrained] foundations in", args.out, json.dumps(record["figures"]))
        return
    if args.foundations:
        record = ensure_foundations(args.out, args.seed, **{k: getattr(args, k) for k in FOUNDATION_DEFAULTS})
        print("[make_tiny_pretrained] foundations:", json.dumps(record["figures"]),
              f"({record['wall_s'] / 60:.1f} min)")
        return
    for stale in (FOUNDATIONS_FILE, STAND_INS_FILE):  # the folder is (becoming) random stand-ins
        if os.path.isfile(os.path.join(args.out, stale)):
            os.remove(os.path.join(args.out, stale))
    print("[make_tiny_pretrained] InternVL2.5-format MLLM:", write_internvl(args.out, args.seed))
    print("[make_tiny_pretrained] SAM-2 checkpoint:", write_sam2(args.out, args.seed),
          f"(config: {SAM2_TINY_CONFIG})")
    print("[make_tiny_pretrained] proxy SAM-2 checkpoint:", write_sam2(args.out, args.seed, SAM2_PROXY_CONFIG,
                                                                     SAM2_PROXY_FILE), f"(config: {SAM2_PROXY_CONFIG})")
    with open(os.path.join(args.out, STAND_INS_FILE), "w") as f:  # last: marks the folder complete
        json.dump({"kind": "random", "seed": args.seed}, f)


if __name__ == "__main__":
    main()
