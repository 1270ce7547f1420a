# DeSa2VA-4B stage 1 started from a released Sa2VA-4B, imported first:
#   python tools/import_sa2va.py pretrained/Sa2VA-4B --save-path pretrained/Sa2VA-4B-imported
# The text decoder starts from Sa2VA's fine-tuned SAM-2 decoder and e(t) comes from Sa2VA's LLM, the one
# stage 2 (desa2va_4b_from_sa2va.py) aligns with; the datasets use Sa2VA's tokenizer.
_base_ = ["desa2va_text_pretrain_4b.py"]

sa2va_path = "pretrained/Sa2VA-4B-imported"
mllm_path = sa2va_path + "/mllm"
model = dict(mllm=dict(model_path=mllm_path),
             grounding=dict(model_config=sa2va_path + "/sam2_config.yaml", checkpoint=sa2va_path + "/sam2.pt"))
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path)))
