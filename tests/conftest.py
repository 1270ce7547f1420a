"""Shared tiny fixtures: the tiny InternVL2.5-format folder and SAM-2 checkpoint, written once per session
by the same code as `tools/make_tiny_pretrained.py`, in the real checkpoint formats."""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import make_tiny_pretrained  # noqa: E402


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
