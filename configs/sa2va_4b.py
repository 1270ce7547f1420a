# Sa2VA-4B baseline (decouple off): the control arm of every ablation.
from projects.desa2va.config_builders import dataloader, model_cfg, sa2va_data_mix

_base_ = ["_base_/runtime.py", "_base_/schedule.py"]

mllm_path = "pretrained/InternVL2_5-4B"
model = model_cfg(mllm_path, mode="sa2va", reprompt_iters=0, keyframes="first", num_keyframes=5)
train_dataloader = dataloader(sa2va_data_mix(mllm_path), batch_size=2)
del dataloader, model_cfg, sa2va_data_mix
