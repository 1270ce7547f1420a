# DeSa2VA stage 2 on the CPU: tiny stand-ins (pretrained/tiny) and the synthetic benchmark (data/synthetic).
#   python tools/make_tiny_pretrained.py --out pretrained/tiny
#   python tools/make_synthetic_data.py --out data/synthetic
#   python tools/train.py configs/desa2va_tiny.py
# Its Sa2VA control arm: configs/sa2va_tiny.py (= this file with model.decouple=False).
from projects.desa2va.config_builders import warmup_cosine

_base_ = ["_base_/models/desa2va.py", "_base_/datasets/synthetic.py", "_base_/schedules/tiny.py"]

pretrained = "pretrained/tiny"
# Tiny-model settings (measured on the synthetic benchmark, see README "Quickstart"): LoRA r 64 on the 128-d
# LLM and lr 1e-3 (r 8 / 3e-4 did not learn which object is meant within 600 iterations). The tiny SAM-2 is
# random-initialised: its decoder never learned dense mask prompts and its memory never learned to track
# (SAM-2's pre-training teaches the real ones), so no reprompt refinement (it took image cIoU from 0.33 to
# 0.05) and every frame of the 8-frame synthetic clips is a key frame (propagation took J&F from 0.36 to 0.23).
# The quickstart's figures were measured with only the grounding-token embedding rows training, every object once
# and the ground truth sampled at full resolution (not the 1B/4B recipe's full embeddings, 5 objects per sample
# and logits-size ground truth, Sa2VA's),
# and with SAM-2's single-mask output: the tiny SAM-2's IoU head is random, so Sa2VA's best-IoU choice among
# the three multimask outputs would be arbitrary (the real SAM-2's IoU head is trained; 1B/4B use best_iou).
model = dict(precision="fp32",
             mllm=dict(model_path=pretrained + "/InternVL2_5-tiny", gradient_checkpointing=False,
                       lora=dict(r=64, lora_alpha=128, lora_dropout=0.0), train_embeddings="grounding_rows"),
             gt_resolution="full", objects_per_sample=None,
             grounding=dict(model_config="sam2_tiny.yaml", checkpoint=pretrained + "/sam2_tiny.pt",
                            mask_selection="single"),
             stage1_checkpoint=None,  # e.g. "work_dirs/desa2va_text_pretrain_tiny"; None: D_txt from SAM-2
             num_points=1024, system_prompt=None, reprompt_iters=0, num_keyframes=8)
max_iters = 1000
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=max_iters)
param_scheduler = warmup_cosine(max_iters, 30)
default_hooks = dict(checkpoint=dict(interval=500))
del warmup_cosine
