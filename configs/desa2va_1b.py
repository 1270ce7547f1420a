# DeSa2VA-1B stage 2 (decoupled instruction tuning) on 8 GPUs:  bash tools/dist.sh train configs/desa2va_1b.py 8
# The Sa2VA-1B control arm is this file with model.decouple=False (configs/sa2va_1b.py).
_base_ = ["_base_/models/desa2va.py", "_base_/datasets/sa2va_mix.py", "_base_/schedules/sa2va.py",
          "_base_/runtime.py"]

mllm_path = "pretrained/InternVL2_5-1B"
model = dict(mllm=dict(model_path=mllm_path),
             # the text pre-training output: its work dir (the last checkpoint is used) or a checkpoint file
             stage1_checkpoint="work_dirs/desa2va_text_pretrain_1b")
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path)))
