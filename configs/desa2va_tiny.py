# DeSa2VA stage 2 on the CPU: tiny stand-ins (pretrained/tiny) and the synthetic benchmark (data/synthetic).
#   python tools/make_tiny_pretrained.py --out pretrained/tiny
#   python tools/make_synthetic_data.py --out data/synthetic
#   python tools/train.py configs/desa2va_tiny.py
_base_ = ["_base_/runtime.py", "_base_/schedule.py"]

pretrained = "pretrained/tiny"
data_root = "data/synthetic"
stage1_checkpoint = None  # the text pre-training output; None initialises the text decoder from SAM-2
mllm_path = pretrained + "/InternVL2_5-tiny"
sam_size = 256
batch_size = 8

model = dict(
    type="DeSa2VAModel",
    mllm=dict(model_path=mllm_path, torch_dtype="float32", lora=dict(r=8, lora_alpha=16, lora_dropout=0.0)),
    grounding=dict(model_config="sam2_tiny.yaml", checkpoint=pretrained + "/sam2_tiny.pt"),
    mode="desa2va", stage1_checkpoint=stage1_checkpoint, num_points=1024, system_prompt=None,
)

common = dict(model_path=mllm_path, sam_size=sam_size, system=None, max_length=2048)
train_dataloader = dict(
    batch_size=batch_size, num_workers=0, persistent_workers=False,
    dataset=dict(type="MixedDataset", repeats=[1, 1], datasets=[
        dict(type="RefCOCODataset", data_root=data_root + "/refcoco", image_folder=data_root + "/refcoco/images",
             split="train", max_objects=2, **common),
        dict(type="RefVOSDataset", data_root=data_root + "/mevis/train", num_frames=3, max_objects=2, **common),
    ]),
    sampler=dict(type="KindGroupedSampler", batch_size=batch_size, shuffle=True),
    collate_fn=dict(type="desa2va_collate"),
)

# CPU: plain fp32 optimizer wrapper, AdamW betas (0.9, 0.95) as measured in CALIBRATION.md
max_iters = 600
optim_wrapper = dict(type="OptimWrapper", _delete_=True,
                     optimizer=dict(type="AdamW", lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05),
                     clip_grad=dict(max_norm=1.0),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                        custom_keys={"embed_tokens": dict(decay_mult=0.0),
                                                     "lm_head": dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-3, by_epoch=False, begin=0, end=30),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=200), logger=dict(interval=10))
