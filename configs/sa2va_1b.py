# Sa2VA-1B baseline (decouple off), the control arm of every ablation:
#   bash tools/dist.sh train configs/sa2va_1b.py 8
_base_ = ["_base_/models/sa2va.py", "_base_/datasets/sa2va_mix.py", "_base_/schedules/sa2va.py", "_base_/runtime.py"]

mllm_path = "pretrained/InternVL2_5-1B"
model = dict(mllm=dict(model_path=mllm_path))
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path)))
