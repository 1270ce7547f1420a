# DeSa2VA stage 2 on the CPU: tiny stand-ins (pretrained/tiny) and the synthetic benchmark (data/synthetic).
#   python tools/make_tiny_pretrained.py --out pretrained/tiny
#   python tools/make_synthetic_data.py --out data/synthetic
#   python tools/train.py configs/desa2va_tiny.py
from projects.desa2va.config_builders import dataloader, model_cfg

_base_ = ["_base_/tiny.py"]

pretrained = "pretrained/tiny"
data = "data/synthetic"
mllm_path = pretrained + "/InternVL2_5-tiny"
stage1_checkpoint = None  # e.g. "work_dirs/desa2va_text_pretrain_tiny"; None: text decoder from SAM-2

model = model_cfg(mllm_path, mode="desa2va", sam2_config="sam2_tiny.yaml", sam2_checkpoint=pretrained + "/sam2_tiny.pt",
                  stage1_checkpoint=stage1_checkpoint, torch_dtype="float32", gradient_checkpointing=False,
                  lora=dict(r=8, lora_alpha=16, lora_dropout=0.0), num_points=1024, system_prompt=None)
common = dict(model_path=mllm_path, sam_size=256, system=None, max_length=2048)
train_dataloader = dataloader(dict(type="MixedDataset", repeats=[1, 1], datasets=[
    dict(type="RefCOCODataset", data_root=data + "/refcoco", image_folder=data + "/refcoco/images", split="train",
         max_objects=2, **common),
    dict(type="RefVOSDataset", data_root=data + "/mevis/train", num_frames=3, max_objects=2, **common),
]), batch_size=8, num_workers=0)
del dataloader, model_cfg
