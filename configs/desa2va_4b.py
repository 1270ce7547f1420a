# DeSa2VA-4B stage 2 (decoupled instruction tuning) on 8 GPUs:  bash tools/dist.sh train configs/desa2va_4b.py 8
# desa2va_1b.py with the 4B MLLM and its stage 1; the Sa2VA-4B control arm is model.decouple=False (sa2va_4b.py).
_base_ = ["desa2va_1b.py"]

mllm_path = "pretrained/InternVL2_5-4B"
# DeSa2VA's published desa2va_4b.py is Sa2VA's sa2va_4b.py: the phi3_chat template (REFERENCE.md 6)
model = dict(mllm=dict(model_path=mllm_path), stage1_checkpoint="work_dirs/desa2va_text_pretrain_4b",
             chat_template="phi3_chat")
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path, chat_template="phi3_chat")))
