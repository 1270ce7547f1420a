"""Full-size architectures built without weights give the released parameter counts.

InternVL2.5-1B ~0.94B, -4B ~3.7B (the model cards' figures), SAM-2 Hiera-L ~224M (SAM-2 paper: 224.4M).
The exact counts below are what this project's modules produce; a change in any layer shape breaks them.
"""
import torch
from accelerate import init_empty_weights

from projects.desa2va.models.grounding import build_sam2_model
from projects.desa2va.models.mllm import InternVLMLLM
from projects.desa2va.models.mllm.arch_configs import internvl2_5_config


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_internvl2_5_1b_and_4b_parameter_counts():
    with torch.device("meta"):
        m1 = InternVLMLLM.from_config(internvl2_5_config("1B"))
        m4 = InternVLMLLM.from_config(internvl2_5_config("4B"))
    assert _count(m1) == 938_193_024
    assert _count(m4) == 3_712_637_952
    assert _count(m1.vision_model) == _count(m4.vision_model) == 304_012_288  # InternViT-300M
    assert _count(m1.mlp1) == 4_482_816 and _count(m4.mlp1) == 12_595_200
    assert m1.num_image_token == m4.num_image_token == 256  # 448 px tile -> 32x32 -> shuffle -> 16x16


def test_sam2_hiera_large_parameter_count():
    with init_empty_weights():  # Hiera calls .item() while building, so not torch.device('meta')
        model = build_sam2_model("configs/sam2/sam2_hiera_l.yaml")
    assert _count(model) == 224_430_130
    assert model.image_size == 1024 and model.hidden_dim == 256
    assert _count(model.image_encoder) == 212_703_280 and _count(model.sam_mask_decoder) == 4_215_109
