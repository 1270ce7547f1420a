# DeSa2VA stage 2 (METHOD.md 3.2): the Sa2VA arm with the decoupled head, trained with the same recipe (DeSa2VA's
# authors trained on Sa2VA's config), Sa2VA's 5 objects per sample included, so that decouple=False on a
# DeSa2VA config is exactly the Sa2VA config (the control arm; METHOD.md 3.4's variable object count is the
# switch objects_per_sample=None). Its defaults (gate fusion, branch weights 0.5 / 0.5 / 1.0, alignment 0.5
# with a stage-1 teacher, orthogonality 0.1, 5 uniform key frames, 1 reprompt, direct post-processing) are in
# projects/desa2va/models/builder.py. Experiments set model.stage1_checkpoint.
_base_ = ["sa2va.py"]
model = dict(decouple=True)
