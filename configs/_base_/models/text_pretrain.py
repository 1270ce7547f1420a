# DeSa2VA stage 1, text pre-training of D_txt and Linear(Real-Text) (METHOD.md 3.1): the MLLM is frozen (no
# LoRA), SAM-2 frozen but for the copied decoder. Defaults (K=3 points, p_drop 0.5, 20 focal + 1 Dice +
# 1 IoU-MSE) are in projects/desa2va/models/builder.py.
model = dict(
    type="DeSa2VAModel", stage=1,
    mllm=dict(model_path="pretrained/InternVL2_5-1B"),
    precision="auto",  # bf16 on GPUs (frozen weights bf16, trainable fp32, autocast), fp32 on CPUs
    grounding=dict(model_config="configs/sam2/sam2_hiera_l.yaml", checkpoint="pretrained/sam2_hiera_large.pt"),
)
