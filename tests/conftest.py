"""Shared tiny fixtures: the tiny InternVL2.5-format folder and SAM-2 checkpoint, written once per session
by the same code as `tools/make_tiny_pretrained.py`, in the real checkpoint formats."""
import os
import sys

import pytest
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import make_tiny_pretrained  # noqa: E402


class ScriptedHead(nn.Module):
    """LM head that emits a fixed token script, whatever the hidden state."""

    def __init__(self, script, vocab):
        super().__init__()
        self.script, self.vocab, self.step = list(script), vocab, 0

    def forward(self, h):
        logits = torch.zeros(*h.shape[:-1], self.vocab)
        logits[..., self.script[min(self.step, len(self.script) - 1)]] = 1.0
        self.step += 1
        return logits


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pretrained_tiny"))
    make_tiny_pretrained.main(["--out", out, "--seed", "0"])
    return out


@pytest.fixture(scope="session")
def tiny_mllm_path(tiny_pretrained):
    return os.path.join(tiny_pretrained, make_tiny_pretrained.MLLM_DIR)


@pytest.fixture(scope="session")
def tiny_sam2_ckpt(tiny_pretrained):
    return os.path.join(tiny_pretrained, make_tiny_pretrained.SAM2_FILE)


@pytest.fixture
def make_mllm(tiny_mllm_path):
    from projects.desa2va.models.mllm import InternVLMLLM

    def make(**kwargs):
        torch.manual_seed(0)
        return InternVLMLLM(tiny_mllm_path, **kwargs)
    return make


@pytest.fixture
def sam2(tiny_sam2_ckpt):
    from projects.desa2va.models.grounding import SAM2Grounding

    torch.manual_seed(0)
    return SAM2Grounding("sam2_tiny.yaml", tiny_sam2_ckpt)


def image_prompt(mllm, question="Please segment the red circle.", answer="Sure, [SEG].", n_tiles=1):
    """ChatML prompt with one <img> block of n_tiles tiles; returns (input_ids (1, L), labels (1, L))."""
    tok = mllm.tokenizer
    img = "<img>" + "<IMG_CONTEXT>" * (mllm.num_image_token * n_tiles) + "</img>"
    prompt = f"<|im_start|>user\n{img}\n{question}<|im_end|>\n<|im_start|>assistant\n"
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    a_ids = tok(answer + "<|im_end|>", add_special_tokens=False).input_ids
    ids = torch.tensor([p_ids + a_ids])
    labels = torch.tensor([[-100] * len(p_ids) + a_ids])
    return ids, labels


ARMS = {"desa2va": dict(stage=2, decouple=True), "sa2va": dict(stage=2, decouple=False),
        "text_pretrain": dict(stage=1)}


def tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, arm="desa2va", lora=None, grounding_overrides=None, **kwargs):
    """The model config of `arm` on the tiny stand-ins (stage-2 defaults: no system prompt)."""
    if arm != "text_pretrain":
        kwargs.setdefault("system_prompt", None)
    mllm = dict(model_path=tiny_mllm_path)
    if lora:
        mllm["lora"] = lora
    grounding = {**dict(model_config="sam2_tiny.yaml", checkpoint=tiny_sam2_ckpt), **(grounding_overrides or {})}
    return dict(ARMS[arm], mllm=mllm, grounding=grounding, **kwargs)


@pytest.fixture
def make_model(tiny_mllm_path, tiny_sam2_ckpt):
    """make_model(arm) on the tiny stand-ins through the builder (LoRA r=8, 1024 loss points, no system prompt)."""
    from projects.desa2va.models.builder import build_model

    def make(arm="desa2va", seed=0, lora=True, **kwargs):
        torch.manual_seed(seed)
        kwargs.setdefault("num_points", 1024)
        lora_cfg = dict(r=8, lora_alpha=16, lora_dropout=0.0) if lora and arm != "text_pretrain" else None
        return build_model(tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, arm, lora_cfg, **kwargs))
    return make


def two_shapes(size=128):
    """An image with a red circle and a blue square; returns (image uint8, circle mask, square mask)."""
    import numpy as np

    img = np.full((size, size, 3), 30, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    s = size / 128
    circle = (yy - 40 * s) ** 2 + (xx - 40 * s) ** 2 <= (20 * s) ** 2
    square = (yy >= 70 * s) & (yy < 110 * s) & (xx >= 65 * s) & (xx < 105 * s)
    img[circle] = (220, 30, 30)
    img[square] = (30, 30, 220)
    return img, circle, square


def moving_clip(frames=3, size=128):
    """A red circle moving right and a blue square moving down over `frames` frames: (images, (2, T, H, W))."""
    import numpy as np

    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for t in range(frames):
        img = np.full((size, size, 3), 30, np.uint8)
        circle = (yy - 40) ** 2 + (xx - 35 - 4 * t) ** 2 <= 18 ** 2
        square = (yy >= 70 + 4 * t) & (yy < 104 + 4 * t) & (xx >= 70) & (xx < 104)
        img[circle], img[square] = (220, 30, 30), (30, 30, 220)
        images.append(img)
        masks.append(np.stack([circle, square]))
    return images, np.stack(masks, 1)


def referring_batch(model, image, items, answer="Sure, [SEG]."):
    """Training batch of one sample per (question, masks (n_obj, H, W) bool array, texts) item on `image`."""
    from projects.desa2va.common.image_processing import mllm_image_tiles, sam2_frames

    mllm = model.mllm
    tiles = mllm_image_tiles(image, mllm.tile_size, 1, 1)
    sam = sam2_frames([image], model.grounding.image_size)
    pairs = [image_prompt(mllm, question=q, answer=answer) for q, _, _ in items]
    length = max(ids.shape[1] for ids, _ in pairs)
    pad = mllm.tokenizer.pad_token_id
    ids = torch.full((len(items), length), pad)
    labels = torch.full((len(items), length), -100)
    att = torch.zeros(len(items), length, dtype=torch.long)
    for i, (x, y) in enumerate(pairs):
        ids[i, :x.shape[1]], labels[i, :x.shape[1]], att[i, :x.shape[1]] = x[0], y[0], 1
    return dict(input_ids=ids, labels=labels, attention_mask=att, pixel_values=tiles.repeat(len(items), 1, 1, 1),
                num_tiles=[1] * len(items), sam_images=[sam] * len(items),
                masks=[torch.as_tensor(m)[:, None] for _, m, _ in items], object_texts=[t for *_, t in items],
                sample_ids=[f"s{i}" for i in range(len(items))])


def train(model, data, steps, lr=3e-4):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = sum(model(data, mode="loss").values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return model.eval()


def iou(a, b):
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


@pytest.fixture(scope="session")
def save_tiny_model(tiny_mllm_path, tiny_sam2_ckpt):
    """save_tiny_model(folder, arm='desa2va', **kwargs) writes an untrained tiny model with save_pretrained."""
    from projects.desa2va.models.builder import build_model

    def save(folder, arm="desa2va", **kwargs):
        torch.manual_seed(0)
        build_model(tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, arm, **kwargs)).save_pretrained(str(folder))
        return str(folder)
    return save


def prompt_sample(model, frames, question, masks, answer="Sure, [SEG]."):
    """One training sample whose prompt is exactly what inference builds (image: one tile; video: one tile
    per frame, one <image> per frame joined by newlines), answer `answer`, masks (n_obj, T, H, W)."""
    import numpy as np

    from projects.desa2va.common.chat_template import expand_image_placeholders, generation_prompt, with_media
    from projects.desa2va.common.image_processing import mllm_image_tiles, mllm_video_frames, sam2_frames

    n, tok, k = len(frames), model.mllm.tokenizer, model.mllm.num_image_token
    user = with_media(question, n)
    p = tok(generation_prompt(expand_image_placeholders(user, [k] * n), (), model.system_prompt),
            add_special_tokens=False).input_ids
    a = tok(answer + "<|im_end|>", add_special_tokens=False).input_ids
    tiles = mllm_video_frames(frames, model.mllm.tile_size) if n > 1 else \
        mllm_image_tiles(frames[0], model.mllm.tile_size, 1, 1)
    return dict(ids=p + a, labels=[-100] * len(p) + a, tiles=tiles,
                sam=sam2_frames(frames, model.grounding.image_size), masks=torch.as_tensor(np.asarray(masks)))


def collate_samples(model, samples, texts):
    length = max(len(s["ids"]) for s in samples)
    pad = model.mllm.tokenizer.pad_token_id
    ids = torch.full((len(samples), length), pad)
    labels = torch.full((len(samples), length), -100)
    att = torch.zeros(len(samples), length, dtype=torch.long)
    for b, s in enumerate(samples):
        ids[b, :len(s["ids"])], labels[b, :len(s["ids"])], att[b, :len(s["ids"])] = \
            torch.tensor(s["ids"]), torch.tensor(s["labels"]), 1
    return dict(input_ids=ids, labels=labels, attention_mask=att, pixel_values=torch.cat([s["tiles"] for s in samples]),
                num_tiles=[s["tiles"].shape[0] for s in samples], sam_images=[s["sam"] for s in samples],
                masks=[s["masks"] for s in samples], object_texts=texts, sample_ids=[f"s{i}" for i in range(len(samples))])


@pytest.fixture(scope="session")
def seg_model_folder(tmp_path_factory, tiny_mllm_path, tiny_sam2_ckpt):
    """A saved tiny DeSa2VA model (save_pretrained format) trained for 40 steps (~35 s) on two shapes, as
    images and as 5-frame clips, to answer "Sure, [SEG]." to segmentation questions: inference tests,
    the demo notebook and the app get real [SEG] answers and masks from a real checkpoint folder."""
    from projects.desa2va.models.builder import build_model

    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, "desa2va",
                                       dict(r=16, lora_alpha=32, lora_dropout=0.0), num_points=1024))
    img, circle, square = two_shapes()
    samples = [prompt_sample(model, [img], "Please segment the red circle in this image.", circle[None, None]),
               prompt_sample(model, [img], "Please segment the blue square in this image.", square[None, None]),
               prompt_sample(model, [img] * 5, "Please segment the red circle in this video.", [[circle] * 5]),
               prompt_sample(model, [img] * 5, "Please segment the blue square in this video.", [[square] * 5])]
    data = collate_samples(model, samples, [["the red circle"], ["the blue square"]] * 2)
    train(model, data, 40, lr=1e-3)
    folder = str(tmp_path_factory.mktemp("seg_model"))
    model.save_pretrained(folder)
    return folder


def write_tiny_sa2va(folder, tiny_mllm_path, tiny_sam2_ckpt, seed=0, drop=(), extra=None, max_shard_bytes=2_000_000,
                     template="qwen_chat", llm_arch="Qwen2ForCausalLM"):
    """A tiny folder in the layout of a released Sa2VA checkpoint, as Sa2VA's hf/convert_to_hf.py writes one
    (checked against it with benchmarks/sa2va_parity.py --make-tiny-release): config.json of
    Sa2VAChatConfig (`architectures` ['Sa2VAChatModel'], `auto_map`, `template`, the LLM's `vocab_size` =
    len(tokenizer)), sharded safetensors with vision_model / mlp1 / language_model /
    grounding_encoder.sam2_model / text_hidden_fcs keys, SAM-2's memory-encoder layer scales named
    `g_weight` (convert_to_hf.py's rename of `.gamma`), a tokenizer holding the grounding tokens, and the
    modeling `*.py` files (never run). `drop`: source keys to leave out; `extra`: {key: tensor} to add."""
    import json
    import shutil

    from projects.desa2va.models.checkpoint_io import read_torch_checkpoint, write_safetensors_folder
    from projects.desa2va.models.mllm import InternVLMLLM

    torch.manual_seed(seed)
    mllm = InternVLMLLM(tiny_mllm_path)  # adds [SEG] & co. to the tokenizer and the embedding rows
    state = mllm.merged_state_dict()
    sam2 = read_torch_checkpoint(tiny_sam2_ckpt)
    sam2 = sam2.get("model", sam2)
    state.update({f"grounding_encoder.sam2_model.{k.replace('.gamma', '.g_weight')}": v for k, v in sam2.items()})
    d = mllm.hidden_size
    state.update({"text_hidden_fcs.0.weight": torch.randn(d, d) / d ** 0.5, "text_hidden_fcs.0.bias": torch.randn(d) * 0.1,
                  "text_hidden_fcs.2.weight": torch.randn(256, d) / d ** 0.5, "text_hidden_fcs.2.bias": torch.randn(256) * 0.1})
    for k in drop:
        state.pop(k)
    state.update(extra or {})
    os.makedirs(folder, exist_ok=True)
    write_safetensors_folder(state, str(folder), max_shard_bytes=max_shard_bytes)
    mllm.tokenizer.save_pretrained(str(folder))
    with open(os.path.join(tiny_mllm_path, "config.json")) as f:
        cfg = json.load(f)
    cfg["llm_config"]["vocab_size"] = int(state["language_model.model.embed_tokens.weight"].shape[0]) \
        if "language_model.model.embed_tokens.weight" in state else cfg["llm_config"]["vocab_size"]
    cfg["llm_config"]["architectures"] = [llm_arch]
    cfg.update(architectures=["Sa2VAChatModel"], model_type="sa2va_chat", template=template, pad2square=False,
               auto_map={"AutoConfig": "configuration_sa2va_chat.Sa2VAChatConfig",
                         "AutoModel": "modeling_sa2va_chat.Sa2VAChatModel",
                         "AutoModelForCausalLM": "modeling_sa2va_chat.Sa2VAChatModel"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for py in ("modeling_sa2va_chat.py", "configuration_sa2va_chat.py", "sam2.py", "templates.py"):  # never run
        with open(os.path.join(folder, py), "w") as f:
            f.write("raise RuntimeError('remote code must not run')\n")
    shutil.copy(os.path.join(tiny_mllm_path, "generation_config.json"), folder) \
        if os.path.isfile(os.path.join(tiny_mllm_path, "generation_config.json")) else None
    return str(folder)


def assert_same_state(a, b, where="state"):
    """Two (nested) checkpoint states are equal bit for bit: tensors with torch.equal (dtype included),
    everything else with ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), \
            f"{where}: differs (max abs {float((a.double() - b.double()).abs().max()) if a.shape == b.shape else 'shape'})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))[:5]}"
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif hasattr(a, "__dict__") and not isinstance(a, type):  # e.g. DeepSpeed's loss scaler: its fields
        assert type(a) is type(b), where
        assert_same_state(vars(a), vars(b), f"{where}({type(a).__name__})")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
