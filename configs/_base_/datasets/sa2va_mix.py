# The instruction-tuning mix of the Sa2VA training release (data/README.md): referring image / video
# segmentation, GCG, visual prompts, image and video QA. `common` goes to every dataset (each dataset's own
# settings win); an experiment sets common.model_path to its MLLM, whose tokenizer and image geometry the
# samples are built for. `repeats`: one value per dataset, in order: Sa2VA's (REFERENCE.md 6; RefCOCO/+/g are
# listed 4 times in its ConcatDataset). Sa2VA's recipe: no system message, referring-image samples with up to 5
# objects, xtuner's LengthGroupedSampler on `modality_length` with per-device batch x accumulation (2 x 4).
data = "data"
coco = data + "/glamm_data/images/coco2014/train2014"
ann, img, vid = data + "/glamm_data/annotations", data + "/glamm_data/images", data + "/video_datas"
osprey = data + "/osprey-724k"
seg_datasets = [
    dict(type="RefCOCODataset", data_root=data + "/ref_seg/refcoco", image_folder=coco, max_objects=5),
    dict(type="RefCOCODataset", data_root=data + "/ref_seg/refcoco+", image_folder=coco, max_objects=5),
    dict(type="RefCOCODataset", data_root=data + "/ref_seg/refcocog", image_folder=coco, max_objects=5),
    dict(type="RefVOSDataset", data_root=vid + "/mevis/train", num_frames=5),
    dict(type="RefVOSDataset", data_root=vid + "/revos", frames_dir="", expression_file="meta_expressions_train_.json",
         num_frames=5),
    dict(type="RefYTVOSDataset", data_root=vid + "/rvos", frames_dir="train/JPEGImages",
         expression_file="meta_expressions/train/meta_expressions.json", num_frames=5),
    dict(type="RefSAVDataset", annotation_file=vid + "/sam_v_final_v3.json", video_folder=vid + "/sam_v_full",
         num_frames=5),
]
seg_repeats = [4, 4, 4, 4, 10, 4, 4]  # RefCOCO, RefCOCO+, RefCOCOg, MeViS, ReVOS, Ref-YTVOS, Ref-SAV
gcg_datasets = [
    dict(type="GCGDataset", layout="grandf", annotation_file=ann + "/GranDf_HA_GCG_train.json",
         image_folder=img + "/GranDf_HA_images/train"),
    dict(type="GCGDataset", layout="openpsg", annotation_file=ann + "/OpenPsgGCG_train.json",
         image_folder=img + "/coco2017/train2017"),
    dict(type="GCGDataset", layout="flickr", annotation_file=ann + "/flickr_mergedGT_GCG_train.json",
         image_folder=img + "/flickr30k/flickr30k-images"),
    dict(type="GCGDataset", layout="refcocog_gcg", annotation_file=ann + "/RefCOCOg_GCG_train.json",
         image_folder=img + "/coco2014/train2014"),
]
gcg_repeats = [10, 1, 1, 1]  # GranD-f, OpenPSG, Flickr, RefCOCOg-GCG
seg_gcg_repeats = seg_repeats + gcg_repeats  # (text_pretrain_mix.py reads these datasets only)
osprey_files = osprey + "/Osprey-724K/osprey_"
chat_datasets = [  # Osprey in its five forms, then video and image QA
    dict(type="OspreyDataset", data_file=osprey_files + "conversation.json", image_folder=osprey + "/coco"),
    dict(type="OspreyDataset", data_file=osprey_files + "detail_description.json", image_folder=osprey + "/coco",
         layout="detailed"),
    dict(type="OspreyDataset", data_file=osprey_files + "part_level.json", image_folder=osprey + "/coco"),
    dict(type="OspreyDataset", data_file=osprey_files + "short_form.json", image_folder=osprey + "/coco"),
    dict(type="OspreyDataset", data_file=osprey_files + "lvis_positive_negative.json", image_folder=osprey + "/coco"),
    dict(type="ChatUniViDataset", data_file=vid + "/chat_univi/video_chat.json",
         video_folder=vid + "/chat_univi/Activity_Videos", num_frames=5),
    dict(type="LLaVADataset", data_file=data + "/llava_data/llava_v1_5_mix665k.json",
         image_folder=data + "/llava_data/llava_images"),
]
chat_repeats = [1, 1, 1, 1, 1, 1, 1]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type="LengthGroupedSampler", length_property="modality_length", per_device_batch_size=2 * 4),
    collate_fn=dict(type="desa2va_collate"),
    dataset=dict(type="MixedDataset", datasets=seg_datasets + gcg_datasets + chat_datasets,
                 repeats=seg_repeats + gcg_repeats + chat_repeats,
                 common=dict(model_path="pretrained/InternVL2_5-1B", sam_size=1024, max_length=8192, system=None,
                             chat_template="qwen_chat")),
)
