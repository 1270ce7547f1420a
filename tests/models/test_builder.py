"""models/builder.py: two switches choose the arm, a setting the arm ignores is an error naming it, inference
settings follow the arm, the alignment term needs its stage-1 teacher, and `decouple=False` on a DeSa2VA
config is the Sa2VA config."""
import os
import warnings

import pytest
import torch
from mmengine.config import Config

from conftest import tiny_model_cfg
from projects.desa2va.models.builder import ModelConfigError, build_model, resolve_settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATHS = dict(mllm=dict(model_path="m"), grounding=dict(model_config="s.yaml"))


def _resolve(**cfg):
    return resolve_settings({**PATHS, **cfg})


# every switch of the decoupled arm, and every stage-1 loss switch, on the sa2va arm
SA2VA_IGNORES = dict(fusion="mean", text_weight=1.0, visual_weight=1.0, fused_weight=0.5,
                     orth_weight=0.0, visual_proj="sa2va_mlp", sa2va_init="folder", num_text_points=2,
                     point_drop_prob=0.1, focal_weight=1.0, pretrain_dice_weight=2.0, iou_weight=0.0)
STAGE1_IGNORES = dict(fusion="gate", reprompt_iters=0, keyframes="first", num_keyframes=3, lm_weight=1.0,
                      bce_weight=1.0, dice_weight=1.0, align_weight=0.0, orth_weight=0.0, max_new_tokens=8,
                      system_prompt=None, max_tiles=4, visual_proj="linear")
DESA2VA_IGNORES = dict(point_drop_prob=0.1, focal_weight=1.0, pretrain_dice_weight=2.0, iou_weight=0.0)


@pytest.mark.parametrize("arm,key,value", [("sa2va", k, v) for k, v in SA2VA_IGNORES.items()]
                         + [("text_pretrain", k, v) for k, v in STAGE1_IGNORES.items()]
                         + [("desa2va", k, v) for k, v in DESA2VA_IGNORES.items()])
def test_a_switch_the_arm_ignores_raises_naming_it(arm, key, value):
    switches = {"sa2va": dict(stage=2, decouple=False), "text_pretrain": dict(stage=1),
                "desa2va": dict(stage=2, decouple=True)}[arm]
    with pytest.raises(ModelConfigError, match=rf"\['{key}'\] are ignored by the {arm} arm"):
        _resolve(**switches, **{key: value})


def test_the_sa2va_arm_drops_the_stage1_hand_off_with_a_warning():
    """decouple=False alone turns a DeSa2VA config that sets its stage-1 checkpoint and alignment weight
    (configs/desa2va_tiny.py) into the baseline, saying what it drops."""
    with pytest.warns(UserWarning, match="model.align_weight is not read by the sa2va arm"):
        s = _resolve(decouple=False, align_weight=2.0)
    assert "align_weight" not in s
    with pytest.warns(UserWarning, match="model.stage1_checkpoint is not read by the sa2va arm"):
        _resolve(decouple=False, stage1_checkpoint="s1.pth")
    with pytest.raises(ModelConfigError, match=r"\['align_weight'\] are ignored by the text_pretrain arm"):
        _resolve(stage=1, align_weight=2.0)


def test_unknown_settings_the_old_mode_and_bad_switch_values_raise():
    with pytest.raises(ModelConfigError, match=r"unknown model setting\(s\) \['fusoin'\]"):
        _resolve(fusoin="gate")
    with pytest.raises(ModelConfigError, match="mode='sa2va' -> stage=2, decouple=False"):
        _resolve(mode="sa2va")
    with pytest.raises(ModelConfigError, match="stage must be 1"):
        _resolve(stage=3)
    with pytest.raises(ModelConfigError, match="decouple must be True or False"):
        _resolve(decouple="no")
    with pytest.raises(ModelConfigError, match="the sa2va arm has no stage 1"):
        _resolve(stage=1, decouple=False)
    with pytest.raises(ModelConfigError, match="keyframes must be one of"):
        _resolve(keyframes="random")
    with pytest.raises(ModelConfigError, match="mllm.lora / gradient_checkpointing are ignored by stage 1"):
        resolve_settings(dict(stage=1, mllm=dict(model_path="m", lora=dict(r=8)), grounding=PATHS["grounding"]))
    with pytest.raises(ModelConfigError, match="sa2va_init needs visual_proj='sa2va_mlp'"):
        _resolve(sa2va_init="folder", stage1_checkpoint="s1.pth")


def test_align_weight_needs_a_stage1_teacher():
    with pytest.raises(ModelConfigError, match=r"align_weight=0.5 without model.stage1_checkpoint"):
        _resolve(align_weight=0.5)
    assert _resolve()["align_weight"] == 0.0  # no text pre-training: no alignment term
    assert _resolve(stage1_checkpoint="s1.pth")["align_weight"] == 0.5
    assert _resolve(stage1_checkpoint="s1.pth", align_weight=0.2)["align_weight"] == 0.2
    assert _resolve(align_weight=0.0)["align_weight"] == 0.0


def test_inference_settings_follow_the_arm_unless_set():
    d, s = _resolve(), _resolve(decouple=False)
    assert (d["keyframes"], d["num_keyframes"], d["reprompt_iters"]) == ("uniform", 5, 1)  # METHOD.md 3.3
    assert (s["keyframes"], s["num_keyframes"], s["reprompt_iters"]) == ("first", 5, 0)    # Sa2VA's
    assert _resolve(decouple=False, reprompt_iters=1, keyframes="uniform")["reprompt_iters"] == 1
    # the defaults of METHOD.md, once
    assert (d["fusion"], d["text_weight"], d["visual_weight"], d["fused_weight"], d["orth_weight"]) == \
        ("gate", 0.5, 0.5, 1.0, 0.1)
    assert (d["bce_weight"], d["dice_weight"], d["num_points"]) == (2.0, 0.5, 12544)
    t = _resolve(stage=1)
    assert (t["num_text_points"], t["point_drop_prob"], t["focal_weight"], t["pretrain_dice_weight"],
            t["iou_weight"]) == (3, 0.5, 20.0, 1.0, 1.0)


@pytest.mark.parametrize("size", ["1b", "4b"])
def test_decouple_false_on_the_desa2va_config_is_the_sa2va_config(size):
    cfg = Config.fromfile(os.path.join(ROOT, "configs", f"desa2va_{size}.py"), lazy_import=False)
    base = Config.fromfile(os.path.join(ROOT, "configs", f"sa2va_{size}.py"), lazy_import=False)
    assert resolve_settings(cfg.model.to_dict()) != resolve_settings(base.model.to_dict())
    cfg.merge_from_dict({"model.decouple": False})
    with pytest.warns(UserWarning, match="stage1_checkpoint is not read by the sa2va arm"):
        settings = resolve_settings(cfg.model.to_dict())
    assert settings == resolve_settings(base.model.to_dict())
    assert cfg.train_dataloader.to_dict() == base.train_dataloader.to_dict()
    assert cfg.optim_wrapper.to_dict() == base.optim_wrapper.to_dict() and cfg.train_cfg == base.train_cfg


def _signature(model):
    return ({k: tuple(v.shape) for k, v in model.state_dict().items()},
            sorted(n for n, p in model.named_parameters() if p.requires_grad), model.settings)


def test_decouple_false_builds_the_same_model_as_the_sa2va_tiny_config(tiny_mllm_path, tiny_pretrained):
    proxy_sam2 = os.path.join(tiny_pretrained, "sam2_tiny_128px.pt")  # the tiny configs' SAM-2 (random here)

    def build(name, **options):
        cfg = Config.fromfile(os.path.join(ROOT, "configs", f"{name}.py"), lazy_import=False)
        cfg.merge_from_dict({"model.mllm.model_path": tiny_mllm_path, "model.grounding.checkpoint": proxy_sam2,
                             **options})
        torch.manual_seed(0)
        return build_model(cfg.model.to_dict())
    baseline, overridden = build("sa2va_tiny"), build("desa2va_tiny", **{"model.decouple": False})
    assert _signature(overridden) == _signature(baseline)
    assert all(torch.equal(a, b) for a, b in zip(overridden.state_dict().values(), baseline.state_dict().values()))
    assert type(overridden.head).__name__ == "Sa2VAHead" and not overridden.decouple
    desa2va = build("desa2va_tiny", **{"model.stage1_checkpoint": None, "model.align_weight": 0.0})
    assert _signature(desa2va) != _signature(baseline) and type(desa2va.head).__name__ == "DecoupledHead"


def test_build_from_a_stage1_checkpoint_turns_alignment_on(make_model, tmp_path, tiny_mllm_path, tiny_sam2_ckpt):
    make_model("text_pretrain").save_stage1(str(tmp_path / "s1.pth"))
    cfg = tiny_model_cfg(tiny_mllm_path, tiny_sam2_ckpt, stage1_checkpoint=str(tmp_path / "s1.pth"))
    assert build_model(cfg).weights.align == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the decoupled arm reads it: no warning
        build_model(cfg, load_checkpoints=False)
