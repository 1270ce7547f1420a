# Sa2VA's schedule: one epoch over the whole mix (its length follows from the mix's size and repeats, the batch
# and the world size), AdamW with linear warm-up over the first 5% of it, then cosine decay to 0 (Sa2VA: lr 4e-5,
# betas (0.9, 0.999), wd 0.05, clip 1.0, per-device batch 2 x 4 accumulation). The schedulers are given in
# epochs and converted to iterations once the dataloader's length is known. No weight decay on norms, biases
# and embeddings.
max_epochs = 1
lr = 4e-5
warmup_ratio = 0.05
# Precision is the model's (model.precision, models/precision.py: bf16 autocast inside its forward, trainable
# weights fp32), so the wrapper is the plain one (no loss scaling; mmengine's AmpOptimWrapper is CUDA-only).
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=1.0, error_if_nonfinite=False),
    accumulative_counts=4,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                       custom_keys={"embed_tokens": dict(decay_mult=0.0), "lm_head": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-5, by_epoch=True, begin=0, end=warmup_ratio * max_epochs,
         convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=True, begin=warmup_ratio * max_epochs, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs)
