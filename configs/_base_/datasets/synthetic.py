# The built-in synthetic benchmark (python tools/make_synthetic_data.py --out data/synthetic), in the
# RefCOCO and MeViS formats, for the tiny CPU configs: 500 image items and 59 videos, repeated 16 and 8 times
# (about one video batch in 17) so that one epoch outlasts the tiny schedules: mmengine's iteration loop pauses
# 2 s at every epoch end (a 132-iteration epoch cost stage 2 7 pauses per 1000 iterations).
data = "data/synthetic"
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type="KindGroupedSampler", batch_size=8, shuffle=True), collate_fn=dict(type="desa2va_collate"),
    dataset=dict(type="MixedDataset", repeats=[16, 8], datasets=[
        dict(type="RefCOCODataset", data_root=data + "/refcoco", image_folder=data + "/refcoco/images", split="train",
             max_objects=2),
        dict(type="RefVOSDataset", data_root=data + "/mevis/train", num_frames=3, max_objects=2),
    ], common=dict(model_path="pretrained/tiny/InternVL2_5-tiny", sam_size=128, system=None, max_length=2048)),
)
