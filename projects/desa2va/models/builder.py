"""The one place where a config becomes a model: `build_model(cfg)` (the registry's `DeSa2VAModel`), and
`load_pretrained(folder)` for saved folders. METHOD.md's defaults are written here once.

Two switches choose the arm (METHOD.md 3.1-3.3):
- `stage`: 1 = text pre-training of D_txt and W_rt (3.1), 2 = instruction tuning (3.2);
- `decouple`: True = DeSa2VA's decoupled head, False = Sa2VA's single projection (the control arm; it
  has no stage 1).
Every other setting belongs to the arms listed in `ARMS`. Building raises, naming the setting, when a
config sets one that the chosen arm ignores (`fusion` on the sa2va arm, any stage-2 setting on stage 1),
and when `align_weight > 0` has no stage-1 teacher (3.5). Inference settings left unset (None) take the
arm's defaults: Sa2VA's (first 5 frames, no reprompt) or DeSa2VA's (5 uniform key frames, 1 reprompt),
so `decouple=False` alone turns a DeSa2VA config into the baseline. `stage1_checkpoint` is an input
of the decoupled arm, not a switch: another arm drops it with a warning, so that override stays one
setting; the sa2va arm drops `align_weight` (the weight of the hand-off's alignment) the same way.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Dict, Mapping

from ..common.chat_template import INTERNVL2_5_SYSTEM, TEMPLATES
from ..common.image_processing import POSTPROCESS
from .checkpoint_io import load_heads, load_sa2va_projection, load_stage1, read_folder_settings
from .desa2va import DeSa2VAModel
from .grounding import SAM2Grounding
from .heads import DecoupledHead, Sa2VAHead, TextPretrainHead
from .mllm import InternVLMLLM
from .precision import PRECISIONS, apply_precision, resolve_precision

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------- METHOD.md's defaults, once
POINTS = dict(num_points=12544, oversample_ratio=3.0, importance_ratio=0.75,          # 1: ~12.5k points a mask
              gt_resolution="full")  # 'logits': ground truth nearest-resized to the logits first (Sa2VA's)
STAGE2 = dict(lm_weight=1.0, bce_weight=2.0, dice_weight=0.5,                          # 1: LM + 2 BCE + 0.5 Dice
              max_new_tokens=64, system_prompt=INTERNVL2_5_SYSTEM, chat_template="internvl2_5", max_tiles=None,
              reprompt_iters=None, keyframes=None, num_keyframes=None, postprocess=None,  # None: the arm's, below
              objects_per_sample=None,  # None: every object once (3.4); Sa2VA: 5 (repeated or cut, REFERENCE.md 6)
              train_with_memory=False)  # 3.4: video samples' later frames tracked through SAM-2's memory, supervised
TEXT_BRANCH = dict(num_text_points=3,                                                  # 3.1: K, D_txt's token layout
                   text_cache_size=4096)  # e(t) cache (LRU): 4096 x d x 4 bytes = 15 MB (1B), 42 MB (4B)
STAGE1 = dict(point_drop_prob=0.5, focal_weight=20.0, pretrain_dice_weight=1.0, iou_weight=1.0)  # 3.1
DECOUPLED = dict(fusion="gate", text_weight=0.5, visual_weight=0.5, fused_weight=1.0,  # 3.2
                 align_weight=None, orth_weight=0.1, visual_proj="linear", stage1_checkpoint=None, sa2va_init=None)
ALIGN_WEIGHT = 0.5  # align_weight=None: this with a stage-1 teacher, 0 without (3.5)
# postprocess: 'sa2va' = Sa2VA's chain (low-res -> SAM-2 size -> original, sigmoid > 0.5); 'direct' = 3.3's
SA2VA_INFERENCE = dict(reprompt_iters=0, keyframes="first", num_keyframes=5, postprocess="sa2va")  # REFERENCE.md 6
DESA2VA_INFERENCE = dict(reprompt_iters=1, keyframes="uniform", num_keyframes=5, postprocess="direct")  # 3.3, 3.4
KEYFRAMES = ("uniform", "first")
COMMON = dict(precision="auto")  # precision.py: 'auto' = bf16 on a GPU with bf16, fp32 elsewhere
ARMS = {"text_pretrain": {**COMMON, **POINTS, **TEXT_BRANCH, **STAGE1},
        "sa2va": {**COMMON, **POINTS, **STAGE2},
        "desa2va": {**COMMON, **POINTS, **STAGE2, **TEXT_BRANCH, **DECOUPLED}}
TORCH_DTYPES = {"float32": "fp32", "bfloat16": "bf16"}  # load_pretrained's torch_dtype -> precision
# the decoupled arm's stage-1 hand-off, which another arm drops with a warning (the sa2va arm also its alignment
# weight, so that decouple=False alone turns a DeSa2VA config into the baseline)
DROPPED = {"text_pretrain": ("stage1_checkpoint",), "sa2va": ("stage1_checkpoint", "align_weight"), "desa2va": ()}
KNOWN = set().union(*ARMS.values())
BUILD_KEYS = ("type", "data_preprocessor", "init_cfg")


class ModelConfigError(ValueError):
    """A model config that names an unknown setting, one its arm ignores, or an impossible combination."""


def arm_name(stage: int, decouple: bool) -> str:
    return "text_pretrain" if stage == 1 else ("desa2va" if decouple else "sa2va")


def resolve_settings(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The complete settings of the model a config describes (no weights read): `stage`, `decouple`,
    `mllm`, `grounding` and every setting of the chosen arm, defaults filled in."""
    cfg = {k: v for k, v in dict(cfg).items() if k not in BUILD_KEYS}
    if "mode" in cfg:
        raise ModelConfigError("model.mode was replaced by two switches: mode='sa2va' -> stage=2, decouple=False; "
                               "'desa2va' -> stage=2, decouple=True; 'text_pretrain' -> stage=1")
    stage, decouple = cfg.pop("stage", 2), cfg.pop("decouple", True)
    if stage not in (1, 2):
        raise ModelConfigError(f"model.stage must be 1 (text pre-training) or 2 (instruction tuning), got {stage!r}")
    if not isinstance(decouple, bool):
        raise ModelConfigError(f"model.decouple must be True or False, got {decouple!r}")
    if stage == 1 and not decouple:
        raise ModelConfigError("model.stage=1 with decouple=False: text pre-training trains DeSa2VA's text decoder; "
                               "the sa2va arm has no stage 1")
    mllm, grounding = dict(cfg.pop("mllm", None) or {}), dict(cfg.pop("grounding", None) or {})
    if "model_path" not in mllm or "model_config" not in grounding:
        raise ModelConfigError("model.mllm.model_path and model.grounding.model_config are required")
    arm = arm_name(stage, decouple)
    allowed = ARMS[arm]
    unknown = sorted(set(cfg) - KNOWN)
    if unknown:
        raise ModelConfigError(f"unknown model setting(s) {unknown}; known: {sorted(KNOWN)}")
    for k in DROPPED[arm]:
        if cfg.pop(k, None) is not None:
            warnings.warn(f"model.{k} is not read by the {arm} arm (stage={stage}, decouple={decouple}): dropped")
    ignored = sorted(k for k in cfg if k not in allowed)
    if ignored:
        raise ModelConfigError(f"model setting(s) {ignored} are ignored by the {arm} arm (stage={stage}, "
                               f"decouple={decouple}): remove them, or choose the arm that uses them")
    if stage == 1 and (mllm.get("lora") or mllm.get("gradient_checkpointing")):
        raise ModelConfigError("model.mllm.lora / gradient_checkpointing are ignored by stage 1: the MLLM stays frozen "
                               "(it only encodes the label texts)")
    if "torch_dtype" in mllm:
        raise ModelConfigError("model.mllm.torch_dtype is set by model.precision ('bf16': frozen weights bf16, "
                               "trainable ones fp32, autocast; 'fp32'; 'auto'): remove it")
    s = {**allowed, **cfg}
    if s["precision"] not in PRECISIONS:
        raise ModelConfigError(f"model.precision must be one of {PRECISIONS}, got {s['precision']!r}")
    if s["gt_resolution"] not in ("full", "logits"):
        raise ModelConfigError(f"model.gt_resolution must be 'full' or 'logits', got {s['gt_resolution']!r}")
    if stage == 2:
        if s["objects_per_sample"] is not None and (not isinstance(s["objects_per_sample"], int)
                                                    or s["objects_per_sample"] < 1):
            raise ModelConfigError(f"model.objects_per_sample must be None or a positive int, got "
                                   f"{s['objects_per_sample']!r}")
        for k, v in (DESA2VA_INFERENCE if decouple else SA2VA_INFERENCE).items():
            s[k] = v if s[k] is None else s[k]
        if s["keyframes"] not in KEYFRAMES:
            raise ModelConfigError(f"model.keyframes must be one of {KEYFRAMES}, got {s['keyframes']!r}")
        if s["postprocess"] not in POSTPROCESS:
            raise ModelConfigError(f"model.postprocess must be one of {POSTPROCESS}, got {s['postprocess']!r}")
        if s["chat_template"] not in TEMPLATES:
            raise ModelConfigError(f"model.chat_template must be one of {sorted(TEMPLATES)}, got "
                                   f"{s['chat_template']!r}")
    if arm == "desa2va":
        if s["align_weight"] is None:
            s["align_weight"] = ALIGN_WEIGHT if s["stage1_checkpoint"] else 0.0
        elif s["align_weight"] > 0 and not s["stage1_checkpoint"]:
            raise ModelConfigError(f"model.align_weight={s['align_weight']} without model.stage1_checkpoint: the "
                                   "alignment teacher W_rt is trained in stage 1; without it there is nothing to align "
                                   "to (set align_weight=0 for the no-text-pre-training ablation)")
        if s["sa2va_init"] and s["visual_proj"] != "sa2va_mlp":
            raise ModelConfigError("model.sa2va_init needs visual_proj='sa2va_mlp' (Sa2VA's projection is "
                                   "Linear-ReLU-Linear)")
    return {"stage": stage, "decouple": decouple, "mllm": mllm, "grounding": grounding, **s}


def build_model(cfg: Mapping[str, Any], load_checkpoints: bool = True) -> DeSa2VAModel:
    """The model of a config (`dict(type='DeSa2VAModel', stage=..., decouple=..., mllm=..., grounding=...,
    ...)`). `load_checkpoints=False` skips the stage-1 and Sa2VA hand-offs (their weights come from a
    trained checkpoint or a saved folder instead); the settings are checked either way."""
    s = resolve_settings(cfg)
    settings = {k: v for k, v in s.items() if k not in ("mllm", "grounding")}
    logger.info("model settings: %s", settings)
    precision = resolve_precision(s["precision"])
    mllm = InternVLMLLM(**s["mllm"], torch_dtype="bfloat16" if precision == "bf16" else "float32")
    grounding = SAM2Grounding(**s["grounding"])
    d = mllm.hidden_size
    if s["stage"] == 1:
        mllm.requires_grad_(False)
        grounding.sam2_model.requires_grad_(False)
        head = TextPretrainHead(grounding, d, s["num_text_points"])
    else:
        grounding.freeze_all_but_mask_decoder()
        if not s["decouple"]:
            head = Sa2VAHead(d, grounding.prompt_dim)
        else:
            head = DecoupledHead(grounding, d, s["num_text_points"], s["fusion"], s["visual_proj"],
                                 s["text_weight"], s["visual_weight"], s["fused_weight"])
            if load_checkpoints and s["stage1_checkpoint"]:
                load_stage1(head, s["stage1_checkpoint"])
            if load_checkpoints and s["sa2va_init"]:  # visual_proj='sa2va_mlp', checked above
                load_sa2va_projection(head.decoupler.vision_proj, s["sa2va_init"])
    model = DeSa2VAModel(settings, mllm, grounding, head, data_preprocessor=dict(cfg).get("data_preprocessor"))
    logger.info("precision %s: parameters per dtype %s", precision, apply_precision(model, precision))
    return model


def build_from_config(**cfg) -> DeSa2VAModel:
    """The registry's `DeSa2VAModel`: mmengine passes a config's keys as keyword arguments."""
    return build_model(cfg)


def settings_from_v1(model: Dict[str, Any]) -> Dict[str, Any]:
    """Version-1 folders recorded `mode` and every constructor argument (the ignored ones too) but not the
    stage-1 path; keep what the arm reads. Their `align_weight` is dropped: the alignment is a training term,
    its teacher W_rt is in the folder's heads, and no stage-1 path is left to check it against."""
    m = dict(model)
    mode = m.pop("mode", "desa2va")
    stage, decouple = (1, True) if mode == "text_pretrain" else (2, mode == "desa2va")
    allowed = set(ARMS[arm_name(stage, decouple)]) - {"align_weight"}
    return {"stage": stage, "decouple": decouple, **{k: v for k, v in m.items() if k in allowed}}


def load_pretrained(folder: str, torch_dtype: str = "float32", device: str = "cpu",
                    **overrides) -> DeSa2VAModel:
    """A saved folder (`DeSa2VAModel.save_pretrained`, tools/convert_to_hf.py, tools/import_sa2va.py), loaded
    strictly without its training config; `overrides` replace saved settings (e.g. reprompt_iters=0, and the
    grounding's mask_selection / object_score_gating). torch_dtype 'bfloat16' loads with precision 'bf16'
    (weights bf16, inference under bf16 autocast), 'float32' with 'fp32'."""
    if torch_dtype not in TORCH_DTYPES:
        raise ValueError(f"torch_dtype must be one of {sorted(TORCH_DTYPES)}, got {torch_dtype!r}")
    overrides["precision"] = TORCH_DTYPES[torch_dtype]
    saved = read_folder_settings(folder)
    settings = saved["model"] if saved["version"] == 2 else settings_from_v1(saved["model"])
    grounding = dict(saved.get("grounding") or {})  # decoding switches (absent in older folders: defaults)
    grounding.update({k: overrides.pop(k) for k in ("mask_selection", "object_score_gating") if k in overrides})
    cfg = {**settings, **overrides,
           "mllm": dict(model_path=os.path.join(folder, "mllm")),
           "grounding": dict(model_config=os.path.join(folder, "sam2_config.yaml"),
                             checkpoint=os.path.join(folder, "sam2.pt"), **grounding)}
    model = build_model(cfg, load_checkpoints=False)
    load_heads(model.head, folder, f"the {arm_name(model.stage, model.decouple)} arm")
    model.requires_grad_(False)  # a loaded folder is for inference: every weight frozen, hence bf16 under 'bf16'
    apply_precision(model, model.precision)
    return model.to(device).eval()
