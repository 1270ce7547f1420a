# DeSa2VA-4B stage 1: text pre-training of the SAM-2 text-aware decoder and Linear(Real-Text).
#   bash tools/dist.sh train configs/desa2va_text_pretrain_4b.py 8
_base_ = ["desa2va_text_pretrain_1b.py"]  # with the 4B MLLM

mllm_path = "pretrained/InternVL2_5-4B"
model = dict(mllm=dict(model_path=mllm_path))
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path)))
