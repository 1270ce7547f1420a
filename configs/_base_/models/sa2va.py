# The Sa2VA arm (METHOD.md 1): stage 2, one projection MLP, one decoder, trained with Sa2VA's recipe
# (REFERENCE.md 6): LoRA plus the full input and output embeddings, exactly 5 objects per sample (repeated
# or cut), ground truth nearest-resized to the logits for point sampling, no system message, Sa2VA-1B's
# qwen_chat template (the datasets' `common` sets the same). Every method setting and Sa2VA's inference
# settings (first 5 frames as key frames, no reprompt, Sa2VA's post-processing, best-IoU masks) are the
# defaults of projects/desa2va/models/builder.py, written there once; an experiment overrides paths and switches.
model = dict(
    type="DeSa2VAModel", stage=2, decouple=False,
    precision="auto",  # bf16 on GPUs (frozen weights bf16, trainable fp32, autocast; docs/ARCHITECTURE.md), fp32 on CPUs
    mllm=dict(model_path="pretrained/InternVL2_5-1B",
              lora=dict(r=128, lora_alpha=256, lora_dropout=0.05), gradient_checkpointing=True,
              train_embeddings="full"),
    grounding=dict(model_config="configs/sam2/sam2_hiera_l.yaml", checkpoint="pretrained/sam2_hiera_large.pt"),
    objects_per_sample=5, gt_resolution="logits", system_prompt=None, chat_template="qwen_chat",
)
