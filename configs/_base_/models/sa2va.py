# The Sa2VA arm (METHOD.md 1): stage 2, one projection MLP, one decoder. Every method setting and Sa2VA's
# inference settings (first 5 frames as key frames, no reprompt) are the defaults of
# projects/desa2va/models/builder.py, written there once; an experiment overrides paths and switches only.
model = dict(
    type="DeSa2VAModel", stage=2, decouple=False,
    mllm=dict(model_path="pretrained/InternVL2_5-1B", torch_dtype="bfloat16",
              lora=dict(r=128, lora_alpha=256, lora_dropout=0.05), gradient_checkpointing=True),
    grounding=dict(model_config="configs/sam2/sam2_hiera_l.yaml", checkpoint="pretrained/sam2_hiera_large.pt"),
)
