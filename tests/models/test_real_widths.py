"""Real widths on CPU: InternVL2.5-1B (InternViT-300M at 448 px, Qwen2.5-0.5B's 896-d LLM with 14 heads and
2 KV heads, the 151674-row vocabulary) and SAM-2 Hiera-L (embed 144, 1024 px input: 256 / 128 / 64 px
feature maps, high-resolution skip features), each stack cut to one layer (Hiera's stage 3 to two: a windowed and a global block), random weights, through the same
builder, training step and `predict` as the real configs.

Expected shapes are worked out by hand from the architectures (REFERENCE.md 1): 448 / 14 = 32 patches a side,
pixel shuffle 0.5 -> 16 x 16 = 256 tokens a tile; SAM-2 1024 / 4 = 256 (stride-4 level), / 8 = 128,
/ 16 = 64 (image embedding), low-res masks 4 x 64 = 256.
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import ScriptedHead, collate_samples
from projects.desa2va.common.chat_template import expand_image_placeholders, generation_prompt, with_media
from projects.desa2va.common.image_processing import mllm_inputs, sam2_frames
from projects.desa2va.inference import predict
from projects.desa2va.models.builder import build_model
from projects.desa2va.models.mllm.arch_configs import internvl2_5_config

# one block per Hiera stage but two in stage 3, which holds Hiera-L's global-attention blocks (a stage's first
# block pools, so it cannot be global), and one memory-attention layer
ONE_LAYER_HIERA_L = ["++model.image_encoder.trunk.stages=[1,1,2,1]", "++model.image_encoder.trunk.global_att_blocks=[3]",
                     "++model.memory_attention.num_layers=1"]


@pytest.fixture(scope="module")
def real_width_model(tmp_path_factory, tiny_mllm_path):
    """InternVL2.5-1B's config.json with one layer per stack (the tiny tokenizer's files beside it), built
    without weights to read, and SAM-2 Hiera-L's config with one block per stage."""
    folder = tmp_path_factory.mktemp("internvl2_5_1b_one_layer")
    cfg = internvl2_5_config("1B")
    cfg["vision_config"]["num_hidden_layers"] = 1
    cfg["llm_config"]["num_hidden_layers"] = 1
    cfg["vision_config"]["use_flash_attn"] = False
    with open(folder / "config.json", "w") as f:
        json.dump(cfg, f)
    for name in os.listdir(tiny_mllm_path):
        if name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "added_tokens")):
            shutil.copy(os.path.join(tiny_mllm_path, name), folder / name)
    torch.manual_seed(0)
    model = build_model(dict(stage=2, decouple=True, precision="fp32", system_prompt=None, num_points=12544,
                             mllm=dict(model_path=str(folder), load_weights=False,
                                       lora=dict(r=8, lora_alpha=16, lora_dropout=0.0)),
                             grounding=dict(model_config="configs/sam2/sam2_hiera_l.yaml", checkpoint=None,
                                            hydra_overrides=ONE_LAYER_HIERA_L)))
    return model


def _sample(model, frames, n_obj, kind):
    tok, geo = model.mllm.tokenizer, model.mllm.geometry
    tiles, tokens = mllm_inputs(geo, frames, kind)
    user = with_media("Please segment the objects.", len(tokens))
    p = tok(generation_prompt(expand_image_placeholders(user, tokens), (), None), add_special_tokens=False).input_ids
    a = tok("Sure, " + " ".join(["[SEG]"] * n_obj) + ".<|im_end|>", add_special_tokens=False).input_ids
    h, w = np.asarray(frames[0]).shape[:2]
    masks = torch.zeros(n_obj, len(frames), h, w, dtype=torch.bool)
    for j in range(n_obj):
        masks[j, :, 20 + 40 * j:60 + 40 * j, 30 + 50 * j:90 + 50 * j] = True
    return dict(ids=p + a, labels=[-100] * len(p) + a, tiles=tiles,
                sam=sam2_frames(frames, model.grounding.image_size), masks=masks), tokens


def test_shapes_at_real_widths(real_width_model):
    model = real_width_model
    mllm, g = model.mllm, model.grounding
    assert (mllm.hidden_size, mllm.tile_size, mllm.num_image_token) == (896, 448, 256)
    lm = mllm.causal_lm.config
    assert (lm.num_attention_heads, lm.num_key_value_heads, lm.vocab_size) == (14, 2, 151674)
    assert mllm.get_input_embeddings().weight.shape[0] >= 151674
    assert g.image_size == 1024 and g.low_res_size == (256, 256)
    with torch.no_grad():
        tiles = torch.randn(2, 3, 448, 448)
        assert mllm.extract_visual_tokens(tiles).shape == (2, 256, 896)
        feats = g.encode_frames(torch.randn(1, 3, 1024, 1024))
    assert [tuple(f.shape) for f in feats.fpn] == [(1, 256, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64)]
    assert g.sam2_model.use_high_res_features_in_sam


def test_training_steps_at_real_widths(real_width_model):
    """One step on an image in 6 tiles (+ the thumbnail) with 5 objects, one on a 5-frame video with 5 objects."""
    model = real_width_model.train()
    rng = np.random.RandomState(0)
    image = rng.randint(0, 255, (448 * 2, 448 * 3, 3), dtype=np.uint8)  # 3:2 -> a 3 x 2 grid
    video = [rng.randint(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(5)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    for frames, kind, n_tiles in (([image], "image", 7), (video, "video", 5)):
        s, tokens = _sample(model, frames, 5, kind)
        assert s["tiles"].shape == (n_tiles, 3, 448, 448) and sum(tokens) == 256 * n_tiles
        assert s["sam"].shape == (len(frames), 3, 1024, 1024)
        data = collate_samples(model, [s], [[f"object {j}" for j in range(5)]])
        losses = model(data, mode="loss")
        assert {"loss_lm", "loss_fused_bce", "loss_text_dice", "loss_orth"} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        opt.zero_grad()
        sum(losses.values()).backward()
        assert model.head.decoupler.text_proj.weight.grad.abs().sum() > 0
        opt.step()


def test_video_predict_at_real_widths(real_width_model):
    model = real_width_model.eval()
    tok = model.mllm.tokenizer
    script = tok("Sure, [SEG].<|im_end|>", add_special_tokens=False).input_ids
    lm = model.mllm.causal_lm
    real_head = lm.lm_head
    lm.lm_head = ScriptedHead(script, real_head.weight.shape[0])
    try:
        rng = np.random.RandomState(1)
        frames = [rng.randint(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(6)]
        out = predict(model, "Please segment the object.", frames=frames)
    finally:
        lm.lm_head = real_head
    assert out["text"] == "Sure, [SEG]." and len(out["masks"]) == 1
    assert out["masks"][0].shape == (6, 240, 320) and out["masks"][0].dtype == bool
