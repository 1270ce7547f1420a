# CPU settings shared by the tiny configs: fp32, AdamW betas (0.9, 0.95) (CALIBRATION.md), short schedule.
# A config that changes max_iters sets train_cfg and param_scheduler again (warmup_cosine).
from projects.desa2va.config_builders import warmup_cosine

_base_ = ["sa2va.py", "../runtime.py"]  # (its hooks refine the runtime's)

max_iters = 600
optim_wrapper = dict(type="OptimWrapper", _delete_=True,
                     optimizer=dict(type="AdamW", lr=3e-4, betas=(0.9, 0.95), weight_decay=0.05),
                     clip_grad=dict(max_norm=1.0),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                        custom_keys={"embed_tokens": dict(decay_mult=0.0),
                                                     "lm_head": dict(decay_mult=0.0)}))
param_scheduler = warmup_cosine(max_iters, 30)
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, _delete_=True)
default_hooks = dict(checkpoint=dict(interval=200), logger=dict(interval=10))
del warmup_cosine
