# The Sa2VA control arm of configs/desa2va_tiny.py on the CPU (same models, data and schedule).
_base_ = ["desa2va_tiny.py"]

model = dict(decouple=False, align_weight=None, stage1_checkpoint=None)  # no stage-1 hand-off (the arm has none)
