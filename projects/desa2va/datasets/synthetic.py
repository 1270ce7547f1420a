"""The built-in synthetic benchmark, written in the real formats so the real readers read it.

    <out>/refcoco/   instances.json (COCO, polygons), refs(unc).p, images/*.png
                     2-5 coloured shapes per image; expressions by colour, shape, size, position and
                     relation ("the red circle", "the largest square", "the triangle left of the blue star").
                     Splits: train = every expression of the training images; on the validation images
                     val = attribute expressions (colour / shape), testA = size and position ("the
                     largest square", "the leftmost shape"), testB = relations to another object. A tiny
                     model learns attributes within minutes on a CPU but stays near chance on comparisons
                     (shared CALIBRATION.md), so they are scored apart.
    <out>/mevis/{train,valid_u}/  JPEGImages/<vid>/<frame>.jpg, meta_expressions.json, mask_dict.json (RLE)
                     shapes moving (some stop halfway); appearance and motion expressions
                     ("the circle moving right", "the shape that stops")
    <out>/llava/qa.json  LLaVA-format questions on the refcoco images ("How many shapes are there?")

Every expression refers to exactly one object (ambiguous phrasings are not emitted). Shapes are
polygons; images are painted with the masks pycocotools decodes from those polygons, so image and
ground truth agree pixel for pixel. Deterministic for a seed: the annotation files are byte-identical.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from ..common.masks import decode_segmentation, encode_rle

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle", "star")
CATEGORY_IDS = {s: i + 1 for i, s in enumerate(SHAPES)}


@dataclass
class Shape:
    kind: str
    color: str
    cx: float
    cy: float
    r: float

    def polygon(self, cx: Optional[float] = None, cy: Optional[float] = None) -> List[float]:
        cx = self.cx if cx is None else cx
        cy = self.cy if cy is None else cy
        if self.kind == "circle":
            a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            pts = np.stack([cx + self.r * np.cos(a), cy + self.r * np.sin(a)], 1)
        elif self.kind == "square":
            s = self.r * 0.85
            pts = np.array([[cx - s, cy - s], [cx + s, cy - s], [cx + s, cy + s], [cx - s, cy + s]])
        elif self.kind == "triangle":
            a = np.array([-np.pi / 2, np.pi / 6, 5 * np.pi / 6])
            pts = np.stack([cx + self.r * np.cos(a), cy + self.r * np.sin(a) + self.r * 0.2], 1)
        else:  # star
            a = np.linspace(-np.pi / 2, 3 * np.pi / 2, 10, endpoint=False)
            rad = np.where(np.arange(10) % 2 == 0, self.r, self.r * 0.45)
            pts = np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], 1)
        return [round(float(v), 2) for v in pts.reshape(-1)]


def _random_shapes(rng: np.random.Generator, size: int, n: int) -> List[Shape]:
    shapes: List[Shape] = []
    tries = 0
    while len(shapes) < n and tries < 500:
        tries += 1
        r = float(rng.uniform(0.08, 0.2) * size)
        cx, cy = (float(v) for v in rng.uniform(r + 2, size - r - 2, 2))
        if all(np.hypot(cx - s.cx, cy - s.cy) > r + s.r + 3 for s in shapes):
            shapes.append(Shape(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), cx, cy, r))
    return shapes


def _paint(size: int, layers: List[Tuple[np.ndarray, Tuple[int, int, int]]], rng: np.random.Generator) -> np.ndarray:
    img = np.full((size, size, 3), 40, np.float32) + rng.normal(0, 4, (size, size, 3))
    for mask, color in layers:
        jitter = rng.integers(-15, 16, 3)
        img[mask] = np.clip(np.array(color) + jitter, 0, 255)
    return np.clip(img, 0, 255).astype(np.uint8)


def random_scene(rng: np.random.Generator, size: int, num_shapes: Tuple[int, int] = (2, 6)
                 ) -> Tuple[np.ndarray, List[np.ndarray], List[Shape]]:
    """One image (size, size, 3) uint8 of `num_shapes` (low, high exclusive) non-overlapping shapes, their
    masks (bool, as pycocotools decodes the polygons that the annotations hold) and the shapes."""
    shapes = _random_shapes(rng, size, int(rng.integers(*num_shapes)))
    masks = [decode_segmentation([s.polygon()], size, size) for s in shapes]
    return _paint(size, [(m, COLORS[s.color]) for m, s in zip(masks, shapes)], rng), masks, shapes


DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def random_clip(rng: np.random.Generator, size: int, frames: int, num_shapes: Tuple[int, int] = (2, 4)):
    """A clip of shapes moving in straight lines (some stop at a random frame): frames [(size, size, 3)
    uint8], tracks [object][frame] bool masks, the shapes and their motions [(direction, speed, stop)]."""
    shapes = _random_shapes(rng, size, int(rng.integers(*num_shapes)))
    motion = []
    for _ in shapes:
        d = str(rng.choice(list(DIRECTIONS)))
        speed = float(rng.uniform(1.5, 3.0)) * size / 128
        stop = int(rng.integers(frames // 3, 2 * frames // 3)) if rng.random() < 0.3 else None
        motion.append((d, speed, stop))
    tracks = []
    for s, (d, speed, stop) in zip(shapes, motion):
        dx, dy = DIRECTIONS[d]
        pos = []
        for f in range(frames):
            steps = min(f, stop) if stop is not None else f
            cx = float(np.clip(s.cx + dx * speed * steps, s.r, size - s.r))
            cy = float(np.clip(s.cy + dy * speed * steps, s.r, size - s.r))
            pos.append(decode_segmentation([s.polygon(cx, cy)], size, size))
        tracks.append(pos)
    images = [_paint(size, [(t[f], COLORS[s.color]) for t, s in zip(tracks, shapes)], rng) for f in range(frames)]
    return images, tracks, shapes, motion


def _unique(shapes: List[Shape], pred) -> Optional[int]:
    hits = [i for i, s in enumerate(shapes) if pred(s)]
    return hits[0] if len(hits) == 1 else None


def referring_expressions(shapes: List[Shape], spatial: bool = True) -> Dict[int, List[str]]:
    """Unambiguous expressions per shape index: attribute and size, plus position and relation when
    `spatial` (not for videos, where shapes move)."""
    out: Dict[int, List[str]] = {i: [] for i in range(len(shapes))}

    def add(i, text):
        if i is not None:
            out[i].append(text)

    for c in COLORS:
        for k in SHAPES:
            add(_unique(shapes, lambda s: s.color == c and s.kind == k), f"the {c} {k}")
        add(_unique(shapes, lambda s: s.color == c), f"the {c} shape")
    for k in SHAPES:
        add(_unique(shapes, lambda s: s.kind == k), f"the {k}")
        same = [i for i, s in enumerate(shapes) if s.kind == k]
        if len(same) > 1:
            by_r = sorted(same, key=lambda i: shapes[i].r)
            if shapes[by_r[-1]].r > 1.15 * shapes[by_r[-2]].r:
                add(by_r[-1], f"the largest {k}")
            if shapes[by_r[1]].r > 1.15 * shapes[by_r[0]].r:
                add(by_r[0], f"the smallest {k}")
    if len(shapes) > 1:
        by_r = sorted(range(len(shapes)), key=lambda i: shapes[i].r)
        if shapes[by_r[-1]].r > 1.15 * shapes[by_r[-2]].r:
            add(by_r[-1], "the largest shape")
    if len(shapes) > 1 and spatial:
        by_x = sorted(range(len(shapes)), key=lambda i: shapes[i].cx)
        if shapes[by_x[1]].cx - shapes[by_x[0]].cx > 10:
            add(by_x[0], "the leftmost shape")
        if shapes[by_x[-1]].cx - shapes[by_x[-2]].cx > 10:
            add(by_x[-1], "the rightmost shape")
    for j, anchor in enumerate(shapes if spatial else []):  # relations to a uniquely named anchor
        if _unique(shapes, lambda s: s.color == anchor.color and s.kind == anchor.kind) != j:
            continue
        for k in SHAPES:
            add(_unique(shapes, lambda s: s.kind == k and s is not anchor and s.cx < anchor.cx - 5),
                f"the {k} left of the {anchor.color} {anchor.kind}")
    return out


def expression_split(text: str) -> str:
    """Validation split of an expression: val (attribute), testA (size, position), testB (relation)."""
    if " left of " in text:
        return "testB"
    if text.split()[1] in ("largest", "smallest", "leftmost", "rightmost"):
        return "testA"
    return "val"


def _dump_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, sort_keys=True, separators=(",", ":"))


def write_refcoco(out: str, rng: np.random.Generator, num_train: int, num_val: int, size: int) -> dict:
    root = os.path.join(out, "refcoco")
    img_dir = os.path.join(root, "images")
    os.makedirs(img_dir, exist_ok=True)
    images, anns, refs, counts = [], [], [], []
    ann_id = ref_id = sent_id = 0
    for image_id in range(1, num_train + num_val + 1):
        split = "train" if image_id <= num_train else "val"
        image, masks, shapes = random_scene(rng, size)
        polys = [s.polygon() for s in shapes]
        name = f"synthetic_{image_id:06d}.png"
        Image.fromarray(image).save(os.path.join(img_dir, name))
        images.append({"id": image_id, "file_name": name, "height": size, "width": size})
        counts.append((image_id, name, shapes))
        exprs = referring_expressions(shapes)
        for i, (s, p, m) in enumerate(zip(shapes, polys, masks)):
            ann_id += 1
            ys, xs = np.nonzero(m)
            anns.append({"id": ann_id, "image_id": image_id, "category_id": CATEGORY_IDS[s.kind], "iscrowd": 0,
                         "segmentation": [p], "area": int(m.sum()),
                         "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]})
            groups: Dict[str, List[str]] = {}
            for e in exprs[i]:  # one ref per (object, split), as RefCOCO has several refs per object
                groups.setdefault(split if split == "train" else expression_split(e), []).append(e)
            for ref_split in sorted(groups):
                sents = []
                for e in groups[ref_split]:
                    sents.append({"raw": e, "sent": e, "tokens": e.split(), "sent_id": sent_id})
                    sent_id += 1
                refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": ref_split,
                             "category_id": CATEGORY_IDS[s.kind], "file_name": name, "sentences": sents,
                             "sent_ids": [x["sent_id"] for x in sents]})
                ref_id += 1
    _dump_json({"images": images, "annotations": anns,
                "categories": [{"id": v, "name": k} for k, v in CATEGORY_IDS.items()]},
               os.path.join(root, "instances.json"))
    with open(os.path.join(root, "refs(unc).p"), "wb") as f:
        pickle.dump(refs, f, protocol=4)
    return {"refs": len(refs), "images": len(images), "counts": counts}


def write_mevis(out: str, rng: np.random.Generator, num_videos: Dict[str, int], frames: int, size: int) -> dict:
    stats = {}
    for split, n in num_videos.items():
        root = os.path.join(out, "mevis", split)
        os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
        videos, mask_dict = {}, {}
        anno = 0
        for v in range(n):
            vid = f"{split}_{v:05d}"
            images, tracks, shapes, motion = random_clip(rng, size, frames)
            os.makedirs(os.path.join(root, "JPEGImages", vid), exist_ok=True)
            for f, img in enumerate(images):
                Image.fromarray(img).save(os.path.join(root, "JPEGImages", vid, f"{f:05d}.jpg"), quality=95)
            anno_ids = []
            for t in tracks:
                mask_dict[str(anno)] = [encode_rle(m) for m in t]
                anno_ids.append(anno)
                anno += 1
            exprs: Dict[int, List[str]] = referring_expressions(shapes, spatial=False)
            for i, (s, (d, _, stop)) in enumerate(zip(shapes, motion)):
                if _unique(shapes, lambda x: x.kind == s.kind) == i:
                    exprs[i].append(f"the {s.kind} moving {d}")
                if stop is not None and sum(m[2] is not None for m in motion) == 1:
                    exprs[i].append("the shape that stops")
            expressions = {}
            for i, texts in exprs.items():
                for text in texts:
                    expressions[str(len(expressions))] = {"exp": text, "anno_id": [anno_ids[i]], "obj_id": [i]}
            if expressions:
                videos[vid] = {"frames": [f"{f:05d}" for f in range(frames)], "expressions": expressions}
        _dump_json({"videos": videos}, os.path.join(root, "meta_expressions.json"))
        _dump_json(mask_dict, os.path.join(root, "mask_dict.json"))
        stats[split] = {"videos": len(videos), "expressions": sum(len(v["expressions"]) for v in videos.values())}
    return stats


def write_llava(out: str, counts) -> dict:
    root = os.path.join(out, "llava")
    os.makedirs(root, exist_ok=True)
    data = []
    for image_id, name, shapes in counts:
        n = len(shapes)
        data.append({"id": f"synthetic_{image_id:06d}", "image": name, "conversations": [
            {"from": "human", "value": "<image>\nHow many shapes are there?"},
            {"from": "gpt", "value": f"There are {n} shapes."}]})
    _dump_json(data, os.path.join(root, "qa.json"))
    return {"questions": len(data)}


def make_synthetic(out: str, seed: int = 0, num_train_images: int = 500, num_val_images: int = 100,
                   num_train_videos: int = 60, num_val_videos: int = 20, frames: int = 8, size: int = 128) -> dict:
    rng = np.random.default_rng(seed)
    ref = write_refcoco(out, rng, num_train_images, num_val_images, size)
    vos = write_mevis(out, rng, {"train": num_train_videos, "valid_u": num_val_videos}, frames, size)
    qa = write_llava(out, ref.pop("counts")[:num_train_images])
    return {"refcoco": ref, "mevis": vos, "llava": qa}
