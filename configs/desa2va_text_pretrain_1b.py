# DeSa2VA-1B stage 1: text pre-training of the SAM-2 text-aware decoder and Linear(Real-Text).
#   bash tools/dist.sh train configs/desa2va_text_pretrain_1b.py 8
_base_ = ["_base_/models/text_pretrain.py", "_base_/datasets/text_pretrain_mix.py", "_base_/schedules/sa2va.py",
          "_base_/runtime.py"]

mllm_path = "pretrained/InternVL2_5-1B"
model = dict(mllm=dict(model_path=mllm_path))
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path)))
optim_wrapper = dict(optimizer=dict(lr=1e-4), accumulative_counts=1)
