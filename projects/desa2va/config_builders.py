"""Helpers that experiment configs call, so the 1B / 4B / tiny configs stay small and share one definition
of the model and of the Sa2VA training-release data mix. Configs are read with `lazy_import=False`
(tools/train.py does), which lets them import and call these functions.

Paths follow the Sa2VA-Training release layout under `data/` (see data/README.md); every path can be
overridden through the arguments.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional


def model_cfg(mllm_path: str, mode: str = "desa2va", sam2_config: str = "configs/sam2/sam2_hiera_l.yaml",
              sam2_checkpoint: str = "pretrained/sam2_hiera_large.pt", stage1_checkpoint: Optional[str] = None,
              torch_dtype: str = "bfloat16", lora: Optional[Dict[str, Any]] = None,
              gradient_checkpointing: bool = True, **method) -> Dict[str, Any]:
    """DeSa2VAModel config; `method` holds METHOD.md switches (fusion, align_weight, ...)."""
    if lora is None and mode != "text_pretrain":
        lora = dict(r=128, lora_alpha=256, lora_dropout=0.05)
    cfg = dict(type="DeSa2VAModel",
               mllm=dict(model_path=mllm_path, torch_dtype=torch_dtype, lora=lora if mode != "text_pretrain" else None,
                         gradient_checkpointing=gradient_checkpointing and mode != "text_pretrain"),
               grounding=dict(model_config=sam2_config, checkpoint=sam2_checkpoint), mode=mode, **method)
    if mode == "desa2va":
        cfg["stage1_checkpoint"] = stage1_checkpoint
    return cfg


def _seg_datasets(common: Dict[str, Any], data: str, video_frames: int) -> List[Dict[str, Any]]:
    coco = f"{data}/glamm_data/images/coco2014/train2014"
    return [
        dict(type="RefCOCODataset", data_root=f"{data}/ref_seg/refcoco", image_folder=coco, **common),
        dict(type="RefCOCODataset", data_root=f"{data}/ref_seg/refcoco+", image_folder=coco, **common),
        dict(type="RefCOCODataset", data_root=f"{data}/ref_seg/refcocog", image_folder=coco, **common),
        dict(type="RefVOSDataset", data_root=f"{data}/video_datas/mevis/train", num_frames=video_frames, **common),
        dict(type="RefVOSDataset", data_root=f"{data}/video_datas/revos", frames_dir="",
             expression_file="meta_expressions_train_.json", num_frames=video_frames, **common),
        dict(type="RefYTVOSDataset", data_root=f"{data}/video_datas/rvos", frames_dir="train/JPEGImages",
             expression_file="meta_expressions/train/meta_expressions.json", num_frames=video_frames, **common),
        dict(type="RefSAVDataset", annotation_file=f"{data}/video_datas/sam_v_final_v3.json",
             video_folder=f"{data}/video_datas/sam_v_full", num_frames=video_frames, **common),
    ]


def _gcg_datasets(common: Dict[str, Any], data: str) -> List[Dict[str, Any]]:
    ann, img = f"{data}/glamm_data/annotations", f"{data}/glamm_data/images"
    return [
        dict(type="GCGDataset", layout="grandf", annotation_file=f"{ann}/GranDf_HA_GCG_train.json",
             image_folder=f"{img}/GranDf_HA_images/train", **common),
        dict(type="GCGDataset", layout="openpsg", annotation_file=f"{ann}/OpenPsgGCG_train.json",
             image_folder=f"{img}/coco2017/train2017", **common),
        dict(type="GCGDataset", layout="flickr", annotation_file=f"{ann}/flickr_mergedGT_GCG_train.json",
             image_folder=f"{img}/flickr30k/flickr30k-images", **common),
        dict(type="GCGDataset", layout="refcocog_gcg", annotation_file=f"{ann}/RefCOCOg_GCG_train.json",
             image_folder=f"{img}/coco2014/train2014", **common),
    ]


def sa2va_data_mix(mllm_path: str, data: str = "data", sam_size: int = 1024, max_length: int = 8192,
                   video_frames: int = 5, repeats: Optional[List[float]] = None) -> Dict[str, Any]:
    """The instruction-tuning mix: referring image/video segmentation, GCG, visual prompts, image and
    video QA (the datasets of the Sa2VA training release). `repeats`: one value per dataset, in order."""
    common = dict(model_path=mllm_path, sam_size=sam_size, max_length=max_length)
    osprey = f"{data}/osprey-724k"
    datasets = _seg_datasets(common, data, video_frames) + _gcg_datasets(common, data) + [
        dict(type="OspreyDataset", data_file=f"{osprey}/Osprey-724K/osprey_conversation.json",
             image_folder=f"{osprey}/coco", **common),
        dict(type="OspreyDataset", data_file=f"{osprey}/Osprey-724K/osprey_detail_description.json",
             image_folder=f"{osprey}/coco", layout="detailed", **common),
        dict(type="ChatUniViDataset", data_file=f"{data}/video_datas/chat_univi/video_chat.json",
             video_folder=f"{data}/video_datas/chat_univi/Activity_Videos", num_frames=video_frames, **common),
        dict(type="LLaVADataset", data_file=f"{data}/llava_data/llava_v1_5_mix665k.json",
             image_folder=f"{data}/llava_data/llava_images", **common),
    ]
    return dict(type="MixedDataset", datasets=datasets, repeats=repeats or [1.0] * len(datasets))


def text_pretrain_mix(mllm_path: str, data: str = "data", sam_size: int = 1024) -> Dict[str, Any]:
    """Stage 1: (frame, mask, text) triples from every segmentation dataset with texts (METHOD.md 3.1)."""
    common = dict(model_path=mllm_path, sam_size=sam_size)
    sources = _seg_datasets(common, data, video_frames=1) + _gcg_datasets(common, data)
    return dict(type="MixedDataset", datasets=[dict(type="text_pretrain_view", dataset=d) for d in sources])


def dataloader(dataset: Dict[str, Any], batch_size: int, num_workers: int = 4) -> Dict[str, Any]:
    return dict(batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0,
                dataset=dataset, sampler=dict(type="KindGroupedSampler", batch_size=batch_size, shuffle=True),
                collate_fn=dict(type="desa2va_collate"))


def warmup_cosine(max_iters: int, warmup_iters: int, start_factor: float = 1e-3) -> List[Dict[str, Any]]:
    """Linear warm-up then cosine decay to 0, per iteration (configs that change max_iters call it again)."""
    return [dict(type="LinearLR", start_factor=start_factor, by_epoch=False, begin=0, end=warmup_iters),
            dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters)]
