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
    sampler = cfg.train_dataloader.sampler
    if name.endswith("tiny"):
        assert sampler.type == "KindGroupedSampler" and sampler.batch_size == cfg.train_dataloader.batch_size
    else:  # Sa2VA's: xtuner's LengthGroupedSampler, per-device batch x accumulation
        assert sampler.type == "LengthGroupedSampler" and sampler.length_property == "modality_length"
        assert sampler.per_device_batch_size == (cfg.train_dataloader.batch_size
                                                 * cfg.optim_wrapper.get("accumulative_counts", 1))
        mix = cfg.train_dataloader.dataset
        assert len(mix.repeats) == len(datasets)
        assert cfg.train_cfg == dict(type="EpochBasedTrainLoop", max_epochs=1)
        if mode != "text_pretrain":  # the model asks with the prompt the data trains (checked by tools/train.py too)
            assert all(d["system"] is None and d["chat_template"] == cfg.model.chat_template for d in datasets)
            assert cfg.model.chat_template == ("phi3_chat" if "4b" in name else "qwen_chat")
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
    cfg.model.precision = "fp32"
    cfg.model.grounding = dict(model_config="sam2_tiny.yaml", checkpoint=tiny_sam2_ckpt)
    if "stage1_checkpoint" in cfg.model:
        cfg.model.stage1_checkpoint = None
        if cfg.model.get("align_weight"):  # no teacher: no alignment term (the tiny config sets 2.0)
            cfg.model.align_weight = 0.0
    model = MODELS.build(cfg.model)
    assert isinstance(model, DeSa2VAModel) and (model.stage, model.decouple) == (stage, decouple)


SA2VA_REPEATS = {  # REFERENCE.md 6 (Sa2VA's sa2va_{1b,4b}.py), by annotation file / root
    "ref_seg/refcoco": 4, "ref_seg/refcoco+": 4, "ref_seg/refcocog": 4, "mevis/train": 4, "revos": 10, "rvos": 4,
    "sam_v_final_v3.json": 4, "GranDf_HA_GCG_train.json": 10, "OpenPsgGCG_train.json": 1,
    "flickr_mergedGT_GCG_train.json": 1, "RefCOCOg_GCG_train.json": 1, "osprey_conversation.json": 1,
    "osprey_detail_description.json": 1, "osprey_part_level.json": 1, "osprey_short_form.json": 1,
    "osprey_lvis_positive_negative.json": 1, "video_chat.json": 1, "llava_v1_5_mix665k.json": 1}


def test_sa2va_recipe_of_the_baseline_configs():
    """The sa2va arm's recipe is Sa2VA's (REFERENCE.md 6): its mix with its repeats and Osprey's five forms,
    up to 5 objects per RefCOCO sample, exactly 5 objects per sample in the loss, ground truth at the logits'
    size, LoRA plus the full embeddings; DeSa2VA shares all of it (its control arm is decouple=False)."""
    for name in ("sa2va_1b", "desa2va_1b"):
        cfg = Config.fromfile(os.path.join(ROOT, "configs", f"{name}.py"), lazy_import=False)
        mix = cfg.train_dataloader.dataset
        flat = [d for g in mix.datasets for d in (g if isinstance(g, (list, tuple)) else [g])]
        got = {}
        for d, r in zip(flat, mix.repeats):
            where = d.get("data_file") or d.get("annotation_file") or d.get("data_root")
            key = next(k for k in SA2VA_REPEATS if where.endswith(k))
            got[key] = r
        assert got == SA2VA_REPEATS
        assert all(d.get("max_objects") == 5 for d in flat if d["type"] == "RefCOCODataset")
        assert cfg.model.mllm.train_embeddings == "full" and cfg.model.gt_resolution == "logits"
        assert cfg.model.objects_per_sample == 5


def test_sa2va_schedule_covers_one_epoch_of_its_mix(tmp_path, tiny_mllm_path):
    """The schedule of configs/sa2va_1b.py with its mix replaced by tiny data (its sampler, batch and
    accumulation kept): the loop runs exactly one pass of LengthGroupedSampler over every index, and the
    warm-up ends at 5% of it. Expected counts by hand from the mix's size."""
    import math

    import torch
    from mmengine.registry import DATA_SAMPLERS, PARAM_SCHEDULERS

    import make_synthetic_data

    data = str(tmp_path / "synthetic")
    make_synthetic_data.main(["--out", data, "--train-images", "7", "--val-images", "1", "--train-videos", "3",
                             "--val-videos", "1", "--frames", "3"])
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "sa2va_1b.py"), lazy_import=False)
    common = dict(cfg.train_dataloader.dataset.common, model_path=tiny_mllm_path, sam_size=256, max_length=4096)
    mix = DATASETS.build(dict(type="MixedDataset", repeats=[4, 10], common=common, datasets=[
        dict(type="RefCOCODataset", data_root=data + "/refcoco", image_folder=data + "/refcoco/images", max_objects=5),
        dict(type="RefVOSDataset", data_root=data + "/mevis/train", num_frames=2)]))
    n = len(mix)
    assert n == 4 * 7 + 10 * 3 and sorted(set(mix.modality_length)) == [100, 10000]
    sampler = DATA_SAMPLERS.build(dict(cfg.train_dataloader.sampler, dataset=mix, seed=0))
    order = list(sampler)
    assert sorted(set(order)) == list(range(n))  # every index of the mix in the epoch
    per_step = cfg.train_dataloader.batch_size * cfg.optim_wrapper.accumulative_counts  # 2 x 4
    loader = torch.utils.data.DataLoader(range(n), batch_size=cfg.train_dataloader.batch_size, sampler=sampler)
    iters = math.ceil(n / per_step) * per_step // cfg.train_dataloader.batch_size
    assert len(loader) == iters == 32
    loop_cfg = dict(cfg.train_cfg)
    assert loop_cfg.pop("type") == "EpochBasedTrainLoop" and loop_cfg == dict(max_epochs=1)
    # the schedulers in epochs become iterations of this epoch length: warm-up 5% of one epoch, then cosine to 1
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    ends = []
    for sch in cfg.param_scheduler:  # what mmengine does with convert_to_iter_based=True
        assert sch["by_epoch"] and sch["convert_to_iter_based"]
        args = {k: v for k, v in sch.items() if k not in ("type", "convert_to_iter_based")}
        built = PARAM_SCHEDULERS.get(sch["type"]).build_iter_from_epoch(opt, epoch_length=len(loader), **args)
        ends.append((built.begin, built.end))
    assert ends == [(0, int(0.05 * iters)), (int(0.05 * iters), iters)]  # mmengine truncates


def test_train_refuses_a_config_whose_data_prompts_differ_from_the_model():
    import train

    cfg = Config.fromfile(os.path.join(ROOT, "configs", "sa2va_4b.py"), lazy_import=False)
    assert train.prompt_mismatches(cfg) == []
    cfg.train_dataloader.dataset.common.chat_template = "qwen_chat"  # the model asks in phi3_chat
    bad = train.prompt_mismatches(cfg)
    assert len(bad) == 18 and "dataset 0 (RefCOCODataset): chat_template 'qwen_chat'" in bad[0]
    assert "the model's chat_template 'phi3_chat'" in bad[0]
    tiny = Config.fromfile(os.path.join(ROOT, "configs", "desa2va_tiny.py"), lazy_import=False)
    assert train.prompt_mismatches(tiny) == []  # qwen_chat and internvl2_5 are one format
