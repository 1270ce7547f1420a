# DeSa2VA-4B stage 2 started from a released Sa2VA-4B (imported with tools/import_sa2va.py): the LLM,
# projector and tokenizer are Sa2VA's, the visual branch is Sa2VA's projection (visual_proj='sa2va_mlp')
# and decoder (D_vis = the imported SAM-2's decoder), the text branch comes from stage 1
# (desa2va_text_pretrain_4b_from_sa2va.py).
from projects.desa2va.config_builders import dataloader, model_cfg, sa2va_data_mix

_base_ = ["_base_/runtime.py", "_base_/schedule.py"]

sa2va_path = "pretrained/Sa2VA-4B-imported"
mllm_path = sa2va_path + "/mllm"
stage1_checkpoint = "work_dirs/desa2va_text_pretrain_4b_from_sa2va"

model = model_cfg(mllm_path, mode="desa2va", sam2_config=sa2va_path + "/sam2_config.yaml",
                  sam2_checkpoint=sa2va_path + "/sam2.pt", stage1_checkpoint=stage1_checkpoint,
                  visual_proj="sa2va_mlp", sa2va_init=sa2va_path, fusion="gate", text_weight=0.5,
                  visual_weight=0.5, fused_weight=1.0, align_weight=0.5, orth_weight=0.1, reprompt_iters=1,
                  keyframes="uniform", num_keyframes=5)
train_dataloader = dataloader(sa2va_data_mix(mllm_path), batch_size=2)
del dataloader, model_cfg, sa2va_data_mix
