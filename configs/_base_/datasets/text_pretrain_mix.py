# Stage 1: (frame, mask, text) triples from every segmentation dataset of the Sa2VA mix that names its
# objects (METHOD.md 3.1): the referring and GCG datasets, each seen through the text pre-training view
# (one random frame per video item, objects visible on it).
_base_ = ["sa2va_mix.py"]
# Their repeats are the mix's, so stage 1 sees the datasets in the proportions stage 2 does.
train_dataloader = dict(
    batch_size=8, sampler=dict(per_device_batch_size=8),
    dataset=dict(datasets=[{{_base_.seg_datasets}}, {{_base_.gcg_datasets}}], view="text_pretrain",
                 repeats={{_base_.seg_gcg_repeats}}),
)
