# DeSa2VA-4B stage 1 started from a released Sa2VA-4B, imported first:
#   python tools/import_sa2va.py pretrained/Sa2VA-4B --save-path pretrained/Sa2VA-4B-imported
# The text decoder starts from Sa2VA's fine-tuned SAM-2 decoder and e(t) comes from Sa2VA's LLM, the one
# stage 2 (desa2va_4b_from_sa2va.py) aligns with; the datasets use Sa2VA's tokenizer.
from projects.desa2va.config_builders import dataloader, model_cfg, text_pretrain_mix

_base_ = ["_base_/runtime.py", "_base_/schedule.py"]

sa2va_path = "pretrained/Sa2VA-4B-imported"
mllm_path = sa2va_path + "/mllm"
model = model_cfg(mllm_path, mode="text_pretrain", sam2_config=sa2va_path + "/sam2_config.yaml",
                  sam2_checkpoint=sa2va_path + "/sam2.pt", num_text_points=3, point_drop_prob=0.5,
                  focal_weight=20.0, pretrain_dice_weight=1.0, iou_weight=1.0)
train_dataloader = dataloader(text_pretrain_mix(mllm_path), batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=1e-4), accumulative_counts=1)
del dataloader, model_cfg, text_pretrain_mix
