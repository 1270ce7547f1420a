# DeSa2VA stage 1 on the CPU proxy (the tiny foundations, synthetic RefCOCO-format images).
from projects.desa2va.config_builders import warmup_cosine

_base_ = ["_base_/models/text_pretrain.py", "_base_/datasets/synthetic.py", "_base_/schedules/tiny.py"]

pretrained = "pretrained/tiny"
# Scale settings: lr 1e-3, 3000 iterations, and every row prompted by the text token alone (point_drop_prob 1;
# METHOD.md's 0.5 in the 1B/4B configs): D_txt receives nothing else in stage 2, and with half the rows prompted
# by points the proxy learns those first and the text-only rows too slowly (text-only IoU on the val sentences
# 0.49 with 0.5, 0.79 with 1.0, both at 3000 iterations; benchmarks/RESULTS.md).
model = dict(precision="fp32", mllm=dict(model_path=pretrained + "/InternVL2_5-tiny"),
             grounding=dict(model_config="sam2_tiny_128px.yaml", checkpoint=pretrained + "/sam2_tiny_128px.pt"),
             num_points=1024, point_drop_prob=1.0)
# 13 repeats: one epoch (~3250 iterations) outlasts the schedule (mmengine pauses 2 s at each epoch end)
train_dataloader = dict(dataset=dict(_delete_=True, type="MixedDataset", view="text_pretrain", repeats=[13], datasets=[dict(
    type="RefCOCODataset", data_root="data/synthetic/refcoco", image_folder="data/synthetic/refcoco/images",
    split="train")], common=dict(model_path=pretrained + "/InternVL2_5-tiny", sam_size=128)))
max_iters = 3000
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=max_iters)
param_scheduler = warmup_cosine(max_iters, 30)
default_hooks = dict(checkpoint=dict(interval=max_iters), logger=dict(interval=100))
del warmup_cosine
