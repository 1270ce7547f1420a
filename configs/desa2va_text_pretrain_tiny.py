# DeSa2VA stage 1 on the CPU (tiny stand-ins, synthetic RefCOCO-format images).
from projects.desa2va.config_builders import dataloader, model_cfg, warmup_cosine

_base_ = ["_base_/tiny.py"]

pretrained = "pretrained/tiny"
data = "data/synthetic"
mllm_path = pretrained + "/InternVL2_5-tiny"
model = model_cfg(mllm_path, mode="text_pretrain", sam2_config="sam2_tiny.yaml",
                  sam2_checkpoint=pretrained + "/sam2_tiny.pt", torch_dtype="float32", num_points=1024)
train_dataloader = dataloader(dict(type="MixedDataset", datasets=[dict(type="text_pretrain_view", dataset=dict(
    type="RefCOCODataset", data_root=data + "/refcoco", image_folder=data + "/refcoco/images", split="train",
    model_path=mllm_path, sam_size=256))]), batch_size=8, num_workers=0)
max_iters = 400
train_cfg = dict(max_iters=max_iters)
param_scheduler = warmup_cosine(max_iters, 30)
default_hooks = dict(checkpoint=dict(interval=max_iters))
del dataloader, model_cfg, warmup_cosine
