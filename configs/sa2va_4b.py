# Sa2VA-4B baseline (decouple off), the control arm of every ablation:
#   bash tools/dist.sh train configs/sa2va_4b.py 8
_base_ = ["sa2va_1b.py"]  # with the 4B MLLM

mllm_path = "pretrained/InternVL2_5-4B"
# Sa2VA-4B trains with the phi3_chat template (sa2va_4b.py in Sa2VA's repository, REFERENCE.md 6)
model = dict(mllm=dict(model_path=mllm_path), chat_template="phi3_chat")
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path, chat_template="phi3_chat")))
