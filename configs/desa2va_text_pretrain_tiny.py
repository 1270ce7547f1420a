# DeSa2VA stage 1 on the CPU (tiny stand-ins, synthetic RefCOCO-format images).
from projects.desa2va.config_builders import warmup_cosine

_base_ = ["_base_/models/text_pretrain.py", "_base_/datasets/synthetic.py", "_base_/schedules/tiny.py"]

pretrained = "pretrained/tiny"
model = dict(precision="fp32", mllm=dict(model_path=pretrained + "/InternVL2_5-tiny"),
             grounding=dict(model_config="sam2_tiny.yaml", checkpoint=pretrained + "/sam2_tiny.pt",
                            mask_selection="single"),  # as desa2va_tiny.py decodes D_txt (see there)
             num_points=1024)
train_dataloader = dict(dataset=dict(_delete_=True, type="MixedDataset", view="text_pretrain", datasets=[dict(
    type="RefCOCODataset", data_root="data/synthetic/refcoco", image_folder="data/synthetic/refcoco/images",
    split="train")], common=dict(model_path=pretrained + "/InternVL2_5-tiny", sam_size=256)))
max_iters = 400
train_cfg = dict(max_iters=max_iters)
param_scheduler = warmup_cosine(max_iters, 30)
default_hooks = dict(checkpoint=dict(interval=max_iters))
del warmup_cosine
