"""Sa2VA parity: a released Sa2VA folder through Sa2VA's own code and through this project, stage by stage.

    python benchmarks/sa2va_parity.py --sa2va-src ../Sa2VA --checkpoint pretrained/Sa2VA-1B
    python benchmarks/sa2va_parity.py --sa2va-src ../Sa2VA --checkpoint /tmp/sa2va_tiny --make-tiny-release

For users who have Sa2VA's code (a checkout of magic-research/Sa2VA, or a release folder with its `*.py`
files) and a release. The original `Sa2VAChatModel.predict_forward` and this project's predictor (on the
folder imported by `tools/import_sa2va.py`) run on the same image and video; reported per stage: prompt
ids (equal or not), `[SEG]` hidden states and the 1024 x 1024 mask logits (max abs difference), the masks
(IoU per image / key frame / propagated frame) and the time of each side. Not part of CI: it needs the
original code, which imports `timm` (install it next to this project to run this).

`--make-tiny-release` first writes a tiny release into --checkpoint with the original code, saved as
Sa2VA's `hf/convert_to_hf.py` saves (`Sa2VAChatModel.save_pretrained` with `template` and `auto_map` in
config.json, the tokenizer with the grounding tokens, the `*.py` files copied): InternViT and Qwen2 at
CPU width but with the real 448 px / patch-14 geometry that `predict_forward` hard-codes, and Sa2VA's
hard-coded SAM-2 (Hiera-L, random weights). Its LLM is scripted through its weights so that it answers
`[SEG]` then end-of-text (see `script_llm`), so the original code produces a mask to compare.

On a machine without CUDA the original code's `.cuda()` calls are made no-ops and its video state is
put on the CPU (`cpu_shims`); nothing else of it is changed.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (puts the repository on sys.path)

import torch  # noqa: E402
from PIL import Image  # noqa: E402

REF_PACKAGE = "sa2va_reference"
GROUNDING_TOKENS = ["[SEG]", "<p>", "</p>", "<vp>", "</vp>"]  # Sa2VA's llava_sam2.py special_tokens


# ---------------------------------------------------------------------------------------------- original code
def load_reference(src: str):
    """Sa2VA's hf modeling code as a package (its files use relative imports): from a checkout
    (projects/llava_sam2/hf/models) or a folder holding modeling_sa2va_chat.py."""
    for cand in (src, os.path.join(src, "projects", "llava_sam2", "hf", "models")):
        if os.path.isfile(os.path.join(cand, "modeling_sa2va_chat.py")):
            break
    else:
        raise SystemExit(f"--sa2va-src {src}: no modeling_sa2va_chat.py there or in projects/llava_sam2/hf/models")
    pkg_root = tempfile.mkdtemp(prefix="sa2va_ref_")
    pkg = os.path.join(pkg_root, REF_PACKAGE)
    os.makedirs(pkg)
    for name in os.listdir(cand):
        if name.endswith(".py"):
            shutil.copy(os.path.join(cand, name), pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    sys.path.insert(0, pkg_root)
    try:
        modeling = importlib.import_module(f"{REF_PACKAGE}.modeling_sa2va_chat")
        config = importlib.import_module(f"{REF_PACKAGE}.configuration_sa2va_chat")
    except ImportError as e:
        raise SystemExit(f"the original code does not import here ({e}); it needs timm, peft, transformers") from e
    return modeling, config, cand


@contextlib.contextmanager
def cpu_shims(model):
    """Without CUDA: `.cuda()` returns the tensor, and the video state that `get_sam2_embeddings` makes
    (device 'cuda' hard-coded) is moved to the CPU."""
    if torch.cuda.is_available():
        yield
        return
    cuda = torch.Tensor.cuda
    enc = model.grounding_encoder
    init = enc.get_sam2_embeddings

    def get_sam2_embeddings(images):
        state = init(images)
        state["device"] = state["storage_device"] = torch.device("cpu")
        return state
    torch.Tensor.cuda = lambda self, *a, **k: self
    enc.get_sam2_embeddings = get_sam2_embeddings
    try:
        yield
    finally:
        torch.Tensor.cuda = cuda
        enc.get_sam2_embeddings = init


def script_llm(lm, tokenizer, scale: float = 400.0) -> None:
    """Weights that make a random Qwen2 answer `[SEG]` then end-of-text on any prompt, through its ordinary
    forward: the last layer's attention adds a constant `scale` along dimension j at every position (values
    of zero weight and bias 1, mapped onto j), `[SEG]`'s input embedding cancels it and adds `scale` along
    dimension k, and the LM head reads j as `[SEG]` and k as end-of-text."""
    cfg = lm.config
    j, k = 0, 1
    seg, eos = tokenizer.convert_tokens_to_ids("[SEG]"), tokenizer.eos_token_id
    attn = lm.model.layers[-1].self_attn
    with torch.no_grad():
        attn.v_proj.weight.zero_()
        attn.v_proj.bias.fill_(1.0)
        attn.o_proj.weight[j] = scale / attn.o_proj.weight.shape[1]
        attn.o_proj.weight[k] = 0.0
        emb = lm.model.embed_tokens.weight
        emb[seg, j] -= scale
        emb[seg, k] += scale
        head = lm.lm_head.weight
        head[seg] = 0.0
        head[eos] = 0.0
        head[seg, j] = 1.0
        head[eos, k] = 1.0
    assert cfg.tie_word_embeddings is False


def make_tiny_release(modeling, config_mod, code_dir: str, out: str, template: str, seed: int) -> None:
    """A tiny Sa2VA release written by the original code, as convert_to_hf.py writes one."""
    from transformers import AutoTokenizer

    import make_tiny_pretrained
    from projects.desa2va.models.mllm.arch_configs import tiny_internvl_config

    tokenizer = make_tiny_pretrained.build_tokenizer()
    tokenizer.add_tokens(GROUNDING_TOKENS, special_tokens=True)  # Sa2VA's _add_special_tokens
    cfg = tiny_internvl_config(vocab_size=len(tokenizer))
    # predict_forward hard-codes 448 px tiles, patch 14 (256 tokens per tile) and 1..12 tiles
    cfg.update(force_image_size=448, max_dynamic_patch=12)
    cfg["vision_config"].update(image_size=448, patch_size=14)
    cfg["llm_config"].update(bos_token_id=None, eos_token_id=tokenizer.eos_token_id, vocab_size=len(tokenizer))
    cfg["template"] = template
    cfg["auto_map"] = {"AutoConfig": "configuration_sa2va_chat.Sa2VAChatConfig",
                       "AutoModel": "modeling_sa2va_chat.Sa2VAChatModel",
                       "AutoModelForCausalLM": "modeling_sa2va_chat.Sa2VAChatModel"}
    torch.manual_seed(seed)
    hf_config = config_mod.Sa2VAChatConfig(**{k: v for k, v in cfg.items() if k != "architectures"})
    model = modeling.Sa2VAChatModel(hf_config, use_flash_attn=False)
    with torch.no_grad():
        for p in model.language_model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.1)
        for layer in model.vision_model.encoder.layers:
            layer.ls1.fill_(0.1)
            layer.ls2.fill_(0.1)
    script_llm(model.language_model, tokenizer)
    # transformers >= 4.45 builds a default config while saving, which Sa2VAChatConfig() cannot be
    cls = type(model.config)
    cls._get_non_default_generation_parameters = lambda self: {}
    try:
        model.save_pretrained(out)
    finally:
        del cls._get_non_default_generation_parameters
    tokenizer.save_pretrained(out)
    for name in os.listdir(code_dir):  # convert_to_hf.py: cp -pr ./projects/llava_sam2/hf/models/* OUT
        if name.endswith(".py"):
            shutil.copy(os.path.join(code_dir, name), out)
    AutoTokenizer.from_pretrained(out)  # loads without remote code


@contextlib.contextmanager
def sa2va_sam2_normalisation(model):
    """Diagnostic: our SAM-2 input normalised as the original's `preprocess_image` does at inference,
    with the ImageNet mean / std rounded to bfloat16 (its default dtype argument, whatever the model's
    dtype; Sa2VA's training code normalises in the image's dtype). Used to show what the remaining
    difference comes from; never part of the project's inference."""
    from projects.desa2va.common.image_processing import IMAGENET_MEAN, IMAGENET_STD, to_pil
    from projects.desa2va.models.grounding import video_memory

    g = model.grounding
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.bfloat16).float()[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.bfloat16).float()[:, None, None]

    def frames_bf16_stats(frames, size):
        out = []
        for f in frames:
            img = to_pil(f).resize((size, size), Image.BICUBIC)
            out.append((torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1) / 255.0 - mean) / std)
        return torch.stack(out)
    plain = video_memory.sam2_frames
    g.preprocess = lambda frames: frames_bf16_stats(frames, g.image_size)
    video_memory.sam2_frames = frames_bf16_stats  # the propagated frames (LazySAM2Frames)
    try:
        yield
    finally:
        del g.preprocess
        video_memory.sam2_frames = plain


# ---------------------------------------------------------------------------------------------- inputs
def synthetic_frames(n: int, size=(200, 150), seed: int = 0) -> List[Image.Image]:
    """A non-square clip: a disc and a bar drifting over a textured background."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = (rng.random((h, w, 3)) * 60 + 40).astype(np.float32)
    frames = []
    for t in range(n):
        img = base.copy()
        cx, cy = 60 + 8 * t, 70 + 3 * t
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 30 ** 2] = (220, 40, 40)
        img[(abs(xx - (150 - 5 * t)) < 12) & (abs(yy - 60) < 45)] = (40, 200, 60)
        frames.append(Image.fromarray(img.clip(0, 255).astype(np.uint8)))
    return frames


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# ---------------------------------------------------------------------------------------------- the two sides
def run_original(model, tokenizer, question: str, image=None, video=None) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    generate, fcs, embd = model.generate, model.text_hidden_fcs, model.grounding_encoder.language_embd_inference

    def spy_generate(**kw):
        seen["ids"] = kw["input_ids"][0].tolist()
        return generate(**kw)

    def spy_embd(state, language_embd):
        out = embd(state, language_embd)
        seen.setdefault("logits_1024", []).append(out.float().cpu())
        return out
    hook = fcs.register_forward_hook(lambda m, i, o: seen.__setitem__("seg", i[0].float().cpu()))
    model.generate, model.grounding_encoder.language_embd_inference = spy_generate, spy_embd
    try:
        with cpu_shims(model), torch.no_grad():
            t = time.perf_counter()
            out = model.predict_forward(image=image, video=video, text=question, tokenizer=tokenizer)
            seen["seconds"] = time.perf_counter() - t
    finally:
        hook.remove()
        del model.generate, model.grounding_encoder.language_embd_inference
    seen["text"], seen["masks"] = out["prediction"], [np.asarray(m) for m in out["prediction_masks"]]
    return seen


def run_ours(model, question: str, image=None, frames=None) -> Dict[str, Any]:
    from projects.desa2va.inference import predict

    seen: Dict[str, Any] = {}
    generate, decode = model.mllm.generate, model.decode_objects_full

    def spy_generate(ids, pv, **kw):
        g = generate(ids, pv, **kw)
        seen["ids"], seen["seg"] = ids[0].tolist(), g.seg_hidden.float().cpu()
        return g

    def spy_decode(*a, **kw):
        out = decode(*a, **kw)
        seen["logits_low"] = out.low_res_logits.float().cpu()
        return out
    model.mllm.generate, model.decode_objects_full = spy_generate, spy_decode
    try:
        t = time.perf_counter()
        out = predict(model, question, image=image, frames=frames)
        seen["seconds"] = time.perf_counter() - t
    finally:
        del model.mllm.generate, model.decode_objects_full
    seen["text"], seen["masks"] = out["text"], [np.asarray(m) for m in out["masks"]]
    return seen


def compare(orig: Dict[str, Any], ours: Dict[str, Any], key_frames: int) -> Dict[str, Any]:
    import torch.nn.functional as F

    r: Dict[str, Any] = {"text_original": orig["text"], "text_ours": ours["text"],
                         "prompt_ids_equal": orig["ids"] == ours["ids"],
                         "prompt_length": [len(orig["ids"]), len(ours["ids"])],
                         "seconds_original": round(orig["seconds"], 2), "seconds_ours": round(ours["seconds"], 2)}
    if orig.get("seg") is not None and ours.get("seg") is not None and orig["seg"].shape == ours["seg"].shape:
        r["seg_hidden_max_abs_diff"] = float((orig["seg"] - ours["seg"]).abs().max())
    else:
        r["seg_hidden_shapes"] = [tuple(x.shape) if x is not None else None for x in (orig.get("seg"), ours.get("seg"))]
    if orig.get("logits_1024") and ours.get("logits_low") is not None:
        # the key frames' (or the image's) logits at SAM-2's size: ours upsampled once, as the chain does
        a = orig["logits_1024"][0][:key_frames, 0]
        b = F.interpolate(ours["logits_low"][:key_frames], size=a.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        r["key_logits_1024_max_abs_diff"] = float((a - b).abs().max())
    if len(orig["masks"]) != len(ours["masks"]):
        r["mask_counts"] = [len(orig["masks"]), len(ours["masks"])]
        return r
    per_frame = []
    for mo, mu in zip(orig["masks"], ours["masks"]):
        mo, mu = mo.reshape(-1, *mo.shape[-2:]), mu.reshape(-1, *mu.shape[-2:])
        per_frame.append([round(iou(a, b), 4) for a, b in zip(mo, mu)])
        r.setdefault("foreground_fraction", []).append([round(float(x.mean()), 3) for x in mo])
    r["iou_per_frame"] = per_frame
    r["iou_key_min"] = min(min(f[:key_frames]) for f in per_frame)
    rest = [x for f in per_frame for x in f[key_frames:]]
    if rest:
        r["iou_propagated_min"] = min(rest)
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sa2va-src", required=True, help="Sa2VA checkout or a folder with its hf *.py files")
    p.add_argument("--checkpoint", required=True, help="a Sa2VA release folder (written first with --make-tiny-release)")
    p.add_argument("--make-tiny-release", action="store_true", help="write a tiny release into --checkpoint first")
    p.add_argument("--template", default="qwen_chat", help="template of the tiny release (qwen_chat, phi3_chat, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default=None, help="an image file (default: a synthetic 200 x 150 image)")
    p.add_argument("--video", default=None, help="a folder of frames (default: 7 synthetic frames)")
    p.add_argument("--frames", type=int, default=7, help="synthetic video length")
    p.add_argument("--question", default="Please segment the red disc.")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=common.RESULTS_DIR)
    p.add_argument("--no-record", action="store_true")
    a = p.parse_args(argv)

    modeling, config_mod, code_dir = load_reference(a.sa2va_src)
    if a.make_tiny_release:
        make_tiny_release(modeling, config_mod, code_dir, a.checkpoint, a.template, a.seed)
    device = common.pick_device(a.device)
    dtype = getattr(torch, a.dtype)
    from transformers import AutoTokenizer

    from projects.desa2va.models.builder import load_pretrained
    from projects.desa2va.models.sa2va_import import import_sa2va

    tokenizer = AutoTokenizer.from_pretrained(a.checkpoint)
    original = modeling.Sa2VAChatModel.from_pretrained(a.checkpoint, torch_dtype=dtype, use_flash_attn=False).eval()
    original.to(device)
    with open(os.path.join(a.checkpoint, "config.json")) as f:
        sam2_cfg = "configs/sam2/sam2_hiera_l.yaml"
        template = json.load(f).get("template")
    imported = tempfile.mkdtemp(prefix="sa2va_imported_")
    import_sa2va(a.checkpoint, imported, sam2_cfg)
    ours = load_pretrained(imported, torch_dtype=a.dtype, device=str(device))
    max_new = 8
    original.preparing_for_generation(tokenizer, max_new_tokens=max_new, torch_dtype=dtype)
    ours.max_new_tokens = max_new

    image = Image.open(a.image).convert("RGB") if a.image else synthetic_frames(1)[0]
    if a.video:
        names = sorted(os.listdir(a.video))
        frames = [Image.open(os.path.join(a.video, n)).convert("RGB") for n in names]
    else:
        frames = synthetic_frames(a.frames, seed=1)
    question = "<image>" + a.question
    keys = min(5, len(frames))
    orig_img = run_original(original, tokenizer, question, image=image)
    orig_vid = run_original(original, tokenizer, question, video=frames)
    res = {"checkpoint": os.path.abspath(a.checkpoint), "template": template, "dtype": a.dtype,
           "frames": len(frames), "image_size": list(image.size),
           "image": compare(orig_img, run_ours(ours, question, image=image), 1),
           "video": compare(orig_vid, run_ours(ours, question, frames=frames), keys)}
    # what the remaining difference comes from: the original rounds SAM-2's mean / std to bf16 at inference
    with sa2va_sam2_normalisation(ours):
        res["image_with_bf16_stats"] = compare(orig_img, run_ours(ours, question, image=image), 1)
        res["video_with_bf16_stats"] = compare(orig_vid, run_ours(ours, question, frames=frames), keys)
    print(json.dumps(res, indent=2))
    img, vid = res["image"], res["video"]
    b_img, b_vid = res["image_with_bf16_stats"], res["video_with_bf16_stats"]
    summary = (f"{template}, {a.dtype}: prompt ids equal {img['prompt_ids_equal']}/{vid['prompt_ids_equal']}, [SEG] "
               f"max diff {img.get('seg_hidden_max_abs_diff', float('nan')):.1e}; mask IoU image {img.get('iou_key_min')}, "
               f"key frames >= {vid.get('iou_key_min')}, propagated >= {vid.get('iou_propagated_min')} (with the "
               f"original's bf16 SAM-2 mean/std: {b_img.get('iou_key_min')} / {b_vid.get('iou_key_min')} / "
               f"{b_vid.get('iou_propagated_min')}); seconds original/ours image {img['seconds_original']}/"
               f"{img['seconds_ours']}, video {vid['seconds_original']}/{vid['seconds_ours']}")
    common.write_result(f"sa2va_parity_{template}_{a.dtype}", res, a.out, summary, not a.no_record,
                        common.device_name(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
