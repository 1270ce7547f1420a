"""The precision policy (models/precision.py) on CPU: bf16 training and inference of the tiny models.

bf16: frozen weights stored in bf16 (norms fp32), trainable ones fp32 (their own master copy), the forward
under bf16 autocast. Compared with the fp32 run of the same seeds.
"""
import json
import os

import numpy as np
import pytest
import torch

from conftest import collate_samples, iou, prompt_sample, referring_batch, train, two_shapes
from projects.desa2va.inference import predict
from projects.desa2va.models.builder import ModelConfigError, load_pretrained
from projects.desa2va.models.precision import is_norm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPRESSIONS = [("Please segment the red circle.", "the red circle"), ("Please segment the blue square.", "the blue square")]


def _batch(model):
    img, circle, square = two_shapes()
    return referring_batch(model, img, [(q, gt[None], [t]) for (q, t), gt in zip(EXPRESSIONS, (circle, square))])


def _stage1_batch(model):
    from projects.desa2va.common.image_processing import sam2_frames

    img, circle, square = two_shapes()
    return dict(sam_images=[sam2_frames([img], model.grounding.image_size)],
                masks=[torch.from_numpy(np.stack([circle, square]))[:, None]],
                object_texts=[[t for _, t in EXPRESSIONS]])


def _losses(make_model, arm, precision, steps=4):
    model = make_model(arm, precision=precision)
    data = _stage1_batch(model) if arm == "text_pretrain" else _batch(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-4)
    out = []
    torch.manual_seed(1)  # the same loss points and point dropouts in both precisions
    model.train()
    for _ in range(steps):
        losses = model(data, mode="loss")
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return model, out


@pytest.mark.parametrize("arm", ["text_pretrain", "desa2va", "sa2va"])
def test_bf16_training_is_finite_and_close_to_fp32(make_model, arm):
    m32, fp32 = _losses(make_model, arm, "fp32")
    m16, bf16 = _losses(make_model, arm, "bf16")
    assert all(np.isfinite(bf16)), bf16
    assert fp32[-1] < fp32[0] and bf16[-1] < bf16[0], (fp32, bf16)  # both learn
    np.testing.assert_allclose(bf16, fp32, rtol=0.03, atol=0.02)
    # storage: trainable fp32, frozen bf16 except normalisation layers (fp32)
    norms = {id(p) for m in m16.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    for name, p in m16.named_parameters():
        want = torch.float32 if p.requires_grad or id(p) in norms else torch.bfloat16
        assert p.dtype == want, (name, p.dtype)
    frozen = [n for n, p in m16.named_parameters() if p.dtype == torch.bfloat16]
    assert any(n.startswith("grounding.sam2_model.image_encoder") for n in frozen)
    assert any(n.startswith("mllm.vision_model") for n in frozen)
    assert {p.dtype for p in m32.parameters()} == {torch.float32}


def test_a_small_step_changes_every_trainable_weight_in_bf16(make_model):
    """Sa2VA's lr 4e-5: one AdamW step moves a weight by ~4e-5, below bf16's spacing at |w| ~ 0.01
    (2^-7 x 2^-7 = 6e-5): in bf16 storage most such steps would round away."""
    model = make_model("desa2va", precision="bf16")
    data = _batch(model)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in named.items()}
    opt = torch.optim.AdamW(named.values(), lr=4e-5, weight_decay=0.0)
    model.train()
    sum(model(data, mode="loss").values()).backward()
    has_grad = {n for n, p in named.items() if p.grad is not None and bool(p.grad.abs().gt(0).any())}
    opt.step()
    for n in ("mllm.mlp1.1.weight", "head.decoupler.text_proj.weight", "head.fusion.gate.0.weight"):
        assert n in has_grad, n
    for n in has_grad:
        p, b = named[n], before[n]
        moved = (p.detach() != b) | (p.grad == 0)  # AdamW moves every element with a gradient
        assert p.dtype == torch.float32 and bool(moved.all()), (n, float(moved.float().mean()))
    # the same step on a bf16 copy of a weight loses most of it (what fp32 master weights prevent)
    w = before["mllm.mlp1.1.weight"]
    step = (named["mllm.mlp1.1.weight"].detach() - w)
    lost = (w.bfloat16() + step.bfloat16()) == w.bfloat16()
    assert float(lost.float().mean()) > 0.5


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory, tiny_mllm_path, tiny_sam2_ckpt):
    """A tiny DeSa2VA model trained in fp32 to segment the two shapes, saved (the inference defaults:
    one reprompt, uniform key frames, propagation)."""
    from conftest import tiny_model_cfg
    from projects.desa2va.models.builder import build_model

    torch.manual_seed(0)
    model = build_model(tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, "desa2va", dict(r=8, lora_alpha=16, lora_dropout=0.0),
                                       num_points=1024, precision="fp32", grounding_overrides=dict(mask_selection="single")))
    img, circle, square = two_shapes()
    frames, clip = _clip()
    samples = [prompt_sample(model, [img], q, gt[None, None]) for (q, _), gt in zip(EXPRESSIONS, (circle, square))]
    samples.append(prompt_sample(model, frames, EXPRESSIONS[0][0], clip[None]))
    train(model, collate_samples(model, samples, [[t] for _, t in EXPRESSIONS] + [[EXPRESSIONS[0][1]]]), steps=100)
    folder = str(tmp_path_factory.mktemp("trained") / "model")
    model.save_pretrained(folder)
    return folder


def _clip(n=6):
    img, circle, square = two_shapes()
    frames, masks = [], []
    for t in range(n):  # the shapes move right by 3 px a frame
        frames.append(np.roll(img, 3 * t, axis=1))
        masks.append(np.roll(circle, 3 * t, axis=1))
    return frames, np.stack(masks)


def test_bf16_predict_matches_fp32(trained_folder):
    m32 = load_pretrained(trained_folder, torch_dtype="float32")
    m16 = load_pretrained(trained_folder, torch_dtype="bfloat16")
    assert m16.precision == "bf16" and m32.precision == "fp32"
    norms = {id(p) for m in m16.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    assert all(p.dtype == (torch.float32 if id(p) in norms else torch.bfloat16) for p in m16.parameters())
    img, circle, square = two_shapes()
    for (question, _), gt in zip(EXPRESSIONS, (circle, square)):
        a, b = predict(m32, question, image=img), predict(m16, question, image=img)
        assert a["text"] == b["text"] == "Sure, [SEG]."
        assert iou(a["masks"][0], gt) > 0.8  # the comparison is about a real mask
        assert iou(a["masks"][0], b["masks"][0]) >= 0.95, iou(a["masks"][0], b["masks"][0])
    frames, gt = _clip()
    a = predict(m32, EXPRESSIONS[0][0], frames=frames)
    b = predict(m16, EXPRESSIONS[0][0], frames=frames)
    assert a["masks"][0].shape == gt.shape
    assert iou(a["masks"][0], gt) > 0.4  # (the tiny SAM-2 never learned to track)
    assert iou(a["masks"][0], b["masks"][0]) >= 0.95, iou(a["masks"][0], b["masks"][0])


def test_zero2_json_resolves_to_bf16_where_cuda_has_it(monkeypatch):
    from projects.desa2va.engine import read_deepspeed_json

    path = os.path.join(ROOT, "configs", "deepspeed", "zero2.json")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    ds, precision = read_deepspeed_json(path)
    assert precision == "bf16"
    assert ds["bf16"] == {"enabled": False} and ds["fp16"] == {"enabled": False}  # the model's policy, not DeepSpeed's
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert read_deepspeed_json(path)[1] == "fp32"  # a GPU without bf16 trains in fp32 (fp16 is not supported)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert read_deepspeed_json(path)[1] == "fp32"
    assert read_deepspeed_json(path, "bf16")[1] == "bf16"  # a model asking for bf16 gets it (CPU autocast)
    with open(os.path.join(ROOT, "configs", "deepspeed", "zero2_cpu.json")) as f:
        assert json.load(f)["bf16"]["enabled"] is False


def test_precision_settings_are_checked(tiny_mllm_path, tiny_sam2_ckpt):
    from conftest import tiny_model_cfg
    from projects.desa2va.models.builder import build_model

    with pytest.raises(ModelConfigError, match="model.precision must be one of"):
        build_model(tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, "sa2va", precision="fp16"))
    cfg = tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, "sa2va")
    cfg["mllm"]["torch_dtype"] = "bfloat16"
    with pytest.raises(ModelConfigError, match="mllm.torch_dtype is set by model.precision"):
        build_model(cfg)
