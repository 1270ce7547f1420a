# DeSa2VA stage 2 (METHOD.md 3.2): the Sa2VA arm with the decoupled head. Its defaults (gate fusion, branch
# weights 0.5 / 0.5 / 1.0, alignment 0.5 with a stage-1 teacher, orthogonality 0.1, 5 uniform key frames,
# 1 reprompt) are in projects/desa2va/models/builder.py. Experiments set model.stage1_checkpoint.
_base_ = ["sa2va.py"]
model = dict(decouple=True)
