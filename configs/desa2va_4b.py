# DeSa2VA-4B stage 2 (decoupled instruction tuning) on 8 GPUs:  bash tools/dist.sh train configs/desa2va_4b.py 8
from projects.desa2va.config_builders import dataloader, model_cfg, sa2va_data_mix

_base_ = ["_base_/runtime.py", "_base_/schedule.py"]

mllm_path = "pretrained/InternVL2_5-4B"
# the text pre-training output: its work dir (the last checkpoint is used) or a checkpoint file
stage1_checkpoint = "work_dirs/desa2va_text_pretrain_4b"

model = model_cfg(mllm_path, mode="desa2va", stage1_checkpoint=stage1_checkpoint, fusion="gate",
                  text_weight=0.5, visual_weight=0.5, fused_weight=1.0, align_weight=0.5, orth_weight=0.1,
                  reprompt_iters=1, keyframes="uniform", num_keyframes=5)
train_dataloader = dataloader(sa2va_data_mix(mllm_path), batch_size=2)
del dataloader, model_cfg, sa2va_data_mix
