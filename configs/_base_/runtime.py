# Runtime shared by every experiment: registries, hooks, logging, environment.
custom_imports = dict(imports=["projects.desa2va.registry"], allow_failed_imports=False)
default_scope = None
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=500, max_keep_ckpts=2),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [dict(type="TrainableWeightsCheckpointHook")]  # checkpoints hold trainable weights only
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
               dist_cfg=dict(backend="nccl"))
log_processor = dict(by_epoch=False, window_size=10)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
