# The instruction-tuning mix of the Sa2VA training release (data/README.md): referring image / video
# segmentation, GCG, visual prompts, image and video QA. `common` goes to every dataset (each dataset's own
# settings win); an experiment sets common.model_path to its MLLM, whose tokenizer and image geometry the
# samples are built for. `repeats`: one value per dataset, in order.
data = "data"
coco = data + "/glamm_data/images/coco2014/train2014"
ann, img, vid = data + "/glamm_data/annotations", data + "/glamm_data/images", data + "/video_datas"
osprey = data + "/osprey-724k"
seg_datasets = [
    dict(type="RefCOCODataset", data_root=data + "/ref_seg/refcoco", image_folder=coco),
    dict(type="RefCOCODataset", data_root=data + "/ref_seg/refcoco+", image_folder=coco),
    dict(type="RefCOCODataset", data_root=data + "/ref_seg/refcocog", image_folder=coco),
    dict(type="RefVOSDataset", data_root=vid + "/mevis/train", num_frames=5),
    dict(type="RefVOSDataset", data_root=vid + "/revos", frames_dir="", expression_file="meta_expressions_train_.json",
         num_frames=5),
    dict(type="RefYTVOSDataset", data_root=vid + "/rvos", frames_dir="train/JPEGImages",
         expression_file="meta_expressions/train/meta_expressions.json", num_frames=5),
    dict(type="RefSAVDataset", annotation_file=vid + "/sam_v_final_v3.json", video_folder=vid + "/sam_v_full",
         num_frames=5),
]
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
chat_datasets = [
    dict(type="OspreyDataset", data_file=osprey + "/Osprey-724K/osprey_conversation.json", image_folder=osprey + "/coco"),
    dict(type="OspreyDataset", data_file=osprey + "/Osprey-724K/osprey_detail_description.json",
         image_folder=osprey + "/coco", layout="detailed"),
    dict(type="ChatUniViDataset", data_file=vid + "/chat_univi/video_chat.json",
         video_folder=vid + "/chat_univi/Activity_Videos", num_frames=5),
    dict(type="LLaVADataset", data_file=data + "/llava_data/llava_v1_5_mix665k.json",
         image_folder=data + "/llava_data/llava_images"),
]
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type="KindGroupedSampler", batch_size=2, shuffle=True), collate_fn=dict(type="desa2va_collate"),
    dataset=dict(type="MixedDataset", datasets=seg_datasets + gcg_datasets + chat_datasets,
                 common=dict(model_path="pretrained/InternVL2_5-1B", sam_size=1024, max_length=8192)),
)
