"""Every experiment config parses, is consistent, and builds its model when pointed at the tiny stand-ins,
so a typo cannot reach a user's GPU node."""
import os

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS

import projects.desa2va.registry  # noqa: F401
from projects.desa2va.models.desa2va import DeSa2VAModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARMS = {"desa2va": (2, True), "sa2va": (2, False), "text_pretrain": (1, True)}
CONFIGS = {
    "desa2va_1b": ("desa2va", "InternVL2_5-1B"), "desa2va_4b": ("desa2va", "InternVL2_5-4B"),
    "sa2va_1b": ("sa2va", "InternVL2_5-1B"), "sa2va_4b": ("sa2va", "InternVL2_5-4B"),
    "desa2va_text_pretrain_1b": ("text_pretrain", "InternVL2_5-1B"),
    "desa2va_text_pretrain_4b": ("text_pretrain", "InternVL2_5-4B"),
    "desa2va_tiny": ("desa2va", "InternVL2_5-tiny"), "sa2va_tiny": ("sa2va", "InternVL2_5-tiny"),
    "desa2va_text_pretrain_tiny": ("text_pretrain", "InternVL2_5-tiny"),
    "desa2va_4b_from_sa2va": ("desa2va", "Sa2VA-4B-imported/mllm"),
    "desa2va_text_pretrain_4b_from_sa2va": ("text_pretrain", "Sa2VA-4B-imported/mllm"),
}


def _datasets(node, common=None):
    """The dataset configs of a (mixed) dataset config, each with the settings the mix gives it."""
    if isinstance(node, (list, tuple)):
        return [d for x in node for d in _datasets(x, common)]
    if isinstance(node, dict):
        if node.get("type") == "MixedDataset":
            return _datasets(node["datasets"], {**(common or {}), **node.get("common", {})})
        return [{**(common or {}), **node}]
    return []


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_experiment_configs_are_short_overrides(name):
    lines = open(os.path.join(ROOT, "configs", f"{name}.py")).read().splitlines()
    if not name.endswith("tiny"):
        assert len(lines) <= 25, f"{name}.py has {len(lines)} lines"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_parses_and_builds_its_model(name, tiny_mllm_path, tiny_sam2_ckpt):
    mode, mllm = CONFIGS[name]
    cfg = Config.fromfile(os.path.join(ROOT, "configs", f"{name}.py"), lazy_import=False)
    stage, decouple = ARMS[mode]
    assert cfg.model.type == "DeSa2VAModel" and cfg.model.stage == stage and cfg.model.get("decouple", True) == decouple
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
        assert cfg.model.grounding.model_config == ("configs/sam2/sam2_hiera_l.yaml" if "from_sa2va" not in name
                                                    else "pretrained/Sa2VA-4B-imported/sam2_config.yaml")
        if mode != "text_pretrain":
            assert cfg.model.mllm.lora == dict(r=128, lora_alpha=256, lora_dropout=0.05)
            assert cfg.optim_wrapper.optimizer.lr == 4e-5
    if mode == "desa2va" and not name.endswith("tiny"):  # stage 1 of the same size (and start) is its teacher
        assert cfg.model.stage1_checkpoint == f"work_dirs/desa2va_text_pretrain_{name[len('desa2va_'):]}"
    if "from_sa2va" in name:
        return  # its weights are an imported Sa2VA folder (tests/inference/test_import_sa2va.py builds one)
    # point the pretrained paths at the tiny stand-ins and build
    cfg.model.mllm.model_path = tiny_mllm_path
    cfg.model.mllm.torch_dtype = "float32"
    cfg.model.grounding = dict(model_config="sam2_tiny.yaml", checkpoint=tiny_sam2_ckpt)
    if "stage1_checkpoint" in cfg.model:
        cfg.model.stage1_checkpoint = None
    model = MODELS.build(cfg.model)
    assert isinstance(model, DeSa2VAModel) and (model.stage, model.decouple) == (stage, decouple)
