# Sa2VA's schedule. AdamW with linear warm-up then cosine decay to 0 (Sa2VA: lr 4e-5, betas (0.9, 0.999), wd 0.05, clip 1.0,
# 5% warm-up). No weight decay on norms, biases and embedding rows (the grounding-token rows train with
# the rest frozen; decay would still shrink the frozen ones).
max_iters = 1000
lr = 4e-5
warmup_ratio = 0.05
optim_wrapper = dict(
    type="AmpOptimWrapper", dtype="bfloat16",
    optimizer=dict(type="AdamW", lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
    accumulative_counts=4,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={"embed_tokens": dict(decay_mult=0.0), "lm_head": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-5, by_epoch=False, begin=0, end=int(warmup_ratio * max_iters)),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=False, begin=int(warmup_ratio * max_iters), end=max_iters),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters)
