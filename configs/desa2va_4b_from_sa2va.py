# DeSa2VA-4B stage 2 started from a released Sa2VA-4B (imported with tools/import_sa2va.py): the LLM,
# projector and tokenizer are Sa2VA's, the visual branch is Sa2VA's projection (visual_proj='sa2va_mlp')
# and decoder (D_vis = the imported SAM-2's decoder), the text branch comes from stage 1
# (desa2va_text_pretrain_4b_from_sa2va.py).
_base_ = ["desa2va_4b.py"]

sa2va_path = "pretrained/Sa2VA-4B-imported"
mllm_path = sa2va_path + "/mllm"
model = dict(mllm=dict(model_path=mllm_path),
             grounding=dict(model_config=sa2va_path + "/sam2_config.yaml", checkpoint=sa2va_path + "/sam2.pt"),
             stage1_checkpoint="work_dirs/desa2va_text_pretrain_4b_from_sa2va", visual_proj="sa2va_mlp",
             sa2va_init=sa2va_path)
train_dataloader = dict(dataset=dict(common=dict(model_path=mllm_path)))
