# DeSa2VA-1B stage 1: text pre-training of the SAM-2 text-aware decoder and Linear(Real-Text).
from projects.desa2va.config_builders import dataloader, model_cfg, text_pretrain_mix

_base_ = ["_base_/runtime.py", "_base_/schedule.py"]

mllm_path = "pretrained/InternVL2_5-1B"
model = model_cfg(mllm_path, mode="text_pretrain", num_text_points=3, point_drop_prob=0.5, focal_weight=20.0,
                  pretrain_dice_weight=1.0, iou_weight=1.0)
train_dataloader = dataloader(text_pretrain_mix(mllm_path), batch_size=8)
optim_wrapper = dict(optimizer=dict(lr=1e-4), accumulative_counts=1)
del dataloader, model_cfg, text_pretrain_mix
