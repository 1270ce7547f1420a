"""RefCOCO / RefCOCO+ / RefCOCOg (refer API files).

Files (`data/ref_seg/<name>/`): `instances.json` (COCO: images, annotations with polygon or RLE
`segmentation`) and `refs(unc).p` (RefCOCOg: `refs(umd).p`), a pickled list of
`{ref_id, ann_id, image_id, split, sentences: [{raw, sent}]}`; images from COCO train2014.

- `mode='train'`: one item per image of the split; up to `max_objects` of its referred objects, each
  with a random sentence, one question/answer turn per object.
- `mode='eval'`: one item per (ref, sentence) of the split, in file order, one turn.
"""
from __future__ import annotations

import os
import random
from collections import OrderedDict
from typing import List, Optional

import numpy as np

from ..common.masks import decode_segmentation, segmentation_area
from .base import GroundingDataset, RawSample, open_image, read_json, read_pickle
from .records import PackedRecords
from .template import SampleError, referring_turns

REFS_FILES = {"refcoco": "refs(unc).p", "refcoco+": "refs(unc).p", "refcocog": "refs(umd).p"}


def load_refer(data_root: str, refs_file: Optional[str] = None, instances_file: str = "instances.json"):
    """(refs list, {image_id: image dict}, {ann_id: annotation dict}) of a refer-API folder."""
    name = os.path.basename(os.path.normpath(data_root))
    refs_path = os.path.join(data_root, refs_file or REFS_FILES.get(name, "refs(unc).p"))
    refs = read_pickle(refs_path)
    inst = read_json(os.path.join(data_root, instances_file))
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    return refs, images, anns


class RefCOCODataset(GroundingDataset):
    kind = "image"

    def __init__(self, data_root: str, image_folder: str, split: str = "train", mode: str = "train",
                 refs_file: Optional[str] = None, instances_file: str = "instances.json", max_objects: int = 3,
                 **kwargs):
        super().__init__(**kwargs)
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        self.image_folder, self.mode, self.max_objects = image_folder, mode, max_objects
        refs, images, anns = load_refer(data_root, refs_file, instances_file)
        refs = [r for r in refs if r["split"] == split]
        if not refs:
            raise ValueError(f"no refs with split {split!r} in {data_root}")

        def obj(r):
            a = anns.get(r["ann_id"])
            return {"ann_id": r["ann_id"], "ref_id": r["ref_id"],
                    "segmentation": None if a is None else a["segmentation"],
                    "sentences": [s.get("sent") or s.get("raw", "") for s in r["sentences"]]}

        items = []
        if mode == "train":
            by_image = OrderedDict()
            for r in refs:
                by_image.setdefault(r["image_id"], []).append(obj(r))
            for image_id, objs in by_image.items():
                items.append({"image": self._image_record(images, image_id), "objects": objs})
        else:
            for r in refs:
                o = obj(r)
                for k, sent in enumerate(o["sentences"]):
                    items.append({"image": self._image_record(images, r["image_id"]),
                                  "objects": [dict(o, sentences=[sent])], "sent_index": k})
        self.items = PackedRecords(items)

    @staticmethod
    def _image_record(images, image_id):
        im = images.get(image_id)
        if im is None:
            return {"id": image_id, "file_name": None, "height": 0, "width": 0}
        return {"id": image_id, "file_name": im["file_name"], "height": im["height"], "width": im["width"]}

    def num_items(self) -> int:
        return len(self.items)

    def item_key(self, index: int) -> str:
        it = self.items[index]
        o = it["objects"][0]
        return f"{it['image']['id']}_{o['ref_id']}_{it.get('sent_index', 0)}"

    def load(self, index: int, rng: random.Random) -> RawSample:
        it = self.items[index]
        im = it["image"]
        sid = f"image {im['id']}" if self.mode == "train" else self.item_key(index)
        if im["file_name"] is None:
            raise SampleError("unknown_image", f"sample {sid}: image id {im['id']} not in instances.json")
        objs = it["objects"]
        if self.mode == "train" and len(objs) > self.max_objects:
            objs = rng.sample(objs, self.max_objects)
        image = open_image(os.path.join(self.image_folder, im["file_name"]), sid)
        h, w = image.height, image.width
        masks, phrases = [], []
        for o in objs:
            if o["segmentation"] is None:
                raise SampleError("unknown_annotation", f"sample {sid}: ann_id {o['ann_id']} (ref {o['ref_id']}) "
                                                        "not in instances.json")
            masks.append(decode_segmentation(o["segmentation"], h, w))
            phrases.append(rng.choice(o["sentences"]) if self.mode == "train" else o["sentences"][0])
        return RawSample(sample_id=sid, kind="image", images=[image], turns=referring_turns(phrases, rng),
                         masks=np.stack(masks)[:, None], object_texts=phrases)

    def ground_truth(self, index: int) -> np.ndarray:
        """(H, W) mask of an eval item from the annotations alone (scoring a failed prediction needs it
        even when the image cannot be read)."""
        it = self.items[index]
        o = it["objects"][0]
        if o["segmentation"] is None or it["image"]["file_name"] is None:
            raise SampleError("unknown_annotation", f"sample {self.item_key(index)}: ann_id {o['ann_id']} (image "
                                                    f"{it['image']['id']}) not in instances.json")
        return decode_segmentation(o["segmentation"], it["image"]["height"], it["image"]["width"])

    def has_target(self, index: int) -> Optional[bool]:
        """Eval mode, from the annotation alone: True when the referred object's mask covers a pixel,
        False when it is empty, None when its ann_id (or image) is not in instances.json."""
        it = self.items[index]
        o = it["objects"][0]
        if o["segmentation"] is None or it["image"]["file_name"] is None:
            return None
        return segmentation_area(o["segmentation"], it["image"]["height"], it["image"]["width"]) > 0

    def references(self) -> List[dict]:
        """Eval mode: per item, the ids and sentence (what evaluation writes next to its result)."""
        out = []
        for i in range(len(self.items)):
            it = self.items[i]
            out.append({"key": self.item_key(i), "image_id": it["image"]["id"], "ref_id": it["objects"][0]["ref_id"],
                        "ann_id": it["objects"][0]["ann_id"], "sentence": it["objects"][0]["sentences"][0]})
        return out
