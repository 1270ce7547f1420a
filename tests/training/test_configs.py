"""Every experiment config parses, is consistent, and builds its model when pointed at the tiny stand-ins,
so a typo cannot reach a user's GPU node."""
import os

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS

import projects.desa2va.registry  # noqa: F401
from projects.desa2va.models.desa2va import DeSa2VAModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = {
    "desa2va_1b": ("desa2va", "InternVL2_5-1B"), "desa2va_4b": ("desa2va", "InternVL2_5-4B"),
    "sa2va_1b": ("sa2va", "InternVL2_5-1B"), "sa2va_4b": ("sa2va", "InternVL2_5-4B"),
    "desa2va_text_pretrain_1b": ("text_pretrain", "InternVL2_5-1B"),
    "desa2va_text_pretrain_4b": ("text_pretrain", "InternVL2_5-4B"),
    "desa2va_tiny": ("desa2va", "InternVL2_5-tiny"), "desa2va_text_pretrain_tiny": ("text_pretrain", "InternVL2_5-tiny"),
}


def _datasets(node):
    if isinstance(node, dict):
        if "type" in node and node["type"] in ("MixedDataset",):
            return [d for x in node["datasets"] for d in _datasets(x)]
        if node.get("type") == "text_pretrain_view":
            return _datasets(node["dataset"])
        return [node]
    return []


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_parses_and_builds_its_model(name, tiny_mllm_path, tiny_sam2_ckpt):
    mode, mllm = CONFIGS[name]
    cfg = Config.fromfile(os.path.join(ROOT, "configs", f"{name}.py"), lazy_import=False)
    assert cfg.model.type == "DeSa2VAModel" and cfg.model.mode == mode
    assert cfg.model.mllm.model_path.endswith(mllm)
    datasets = _datasets(cfg.train_dataloader.dataset)
    assert datasets and all(DATASETS.get(d["type"]) is not None for d in datasets)
    assert all(d["model_path"] == cfg.model.mllm.model_path for d in datasets)  # one tokenizer for data and model
    assert cfg.train_dataloader.sampler.type == "KindGroupedSampler"
    assert cfg.train_dataloader.sampler.batch_size == cfg.train_dataloader.batch_size
    wd = cfg.optim_wrapper.paramwise_cfg
    assert wd.norm_decay_mult == 0 and wd.bias_decay_mult == 0 and wd.custom_keys["embed_tokens"]["decay_mult"] == 0
    if not name.endswith("tiny"):
        assert cfg.optim_wrapper.optimizer.weight_decay == 0.05 and cfg.optim_wrapper.clip_grad.max_norm == 1.0
        assert cfg.model.grounding.model_config == "configs/sam2/sam2_hiera_l.yaml"
        if mode != "text_pretrain":
            assert cfg.model.mllm.lora == dict(r=128, lora_alpha=256, lora_dropout=0.05)
            assert cfg.optim_wrapper.optimizer.lr == 4e-5
    if mode == "desa2va" and not name.endswith("tiny"):
        assert cfg.model.stage1_checkpoint == f"work_dirs/desa2va_text_pretrain_{name.split('_')[-1]}"
    # point the pretrained paths at the tiny stand-ins and build
    cfg.model.mllm.model_path = tiny_mllm_path
    cfg.model.mllm.torch_dtype = "float32"
    cfg.model.grounding = dict(model_config="sam2_tiny.yaml", checkpoint=tiny_sam2_ckpt)
    if "stage1_checkpoint" in cfg.model:
        cfg.model.stage1_checkpoint = None
    model = MODELS.build(cfg.model)
    assert isinstance(model, DeSa2VAModel) and model.mode == mode
