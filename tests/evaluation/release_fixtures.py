"""Small benchmarks written the way the releases ship them (file names, keys and value types of the
Sa2VA evaluation data, the refer API, GLaMM's GCG ground truth, ReVOS's foreground file), plus the
ground truth each holds, as plain arrays, for the tests to score against.

Frames are uniform grey JPEGs whose value grows with the frame's position in *sorted* name order
(`frame_value`), so a test can tell from what a model received in which order the frames came; the
expression files list some videos' frames out of order, as nothing guarantees they are sorted.
"""
import json
import os
import pickle

import numpy as np
from PIL import Image

from scripted import rle

H, W = 36, 48  # non-square: F's tolerance is ceil(0.008 * hypot(36, 48)) = 1 pixel


def frame_value(k: int) -> int:
    return 40 * (k + 1)


def box(y0, y1, x0, x1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def moving_box(t, y0, x0, size=(10, 12), step=(1, 3)):
    """An object's mask on sorted frame t, or an empty mask when it is off screen (negative y0)."""
    if y0 < 0:
        return np.zeros((H, W), bool)
    return box(y0 + step[0] * t, y0 + step[0] * t + size[0], x0 + step[1] * t, x0 + step[1] * t + size[1])


def write_frames(folder, names):
    os.makedirs(folder, exist_ok=True)
    for k, name in enumerate(sorted(names)):
        Image.fromarray(np.full((H, W, 3), frame_value(k), np.uint8)).save(os.path.join(folder, f"{name}.jpg"),
                                                                             quality=100)


def _rles(masks):
    """The release's per-frame list: an RLE, or null where the object is absent."""
    return [rle(m) if m.any() else None for m in masks]


def davis(root):
    """`davis17/`: meta_expressions/valid/meta_expressions.json (obj_id only, no anno_id), valid/mask_dict.pkl
    keyed by the running counter (videos sorted, expression ids sorted), valid/JPEGImages."""
    videos = {  # json order is not sorted order; bear's frames are listed out of order
        "zebra": (["00000", "00001", "00002"], {"1": ("the zebra behind", "2", (20, 30)),
                                                "0": ("the zebra in front", "1", (2, 4))}),
        "bear": (["00010", "00000", "00005"], {"0": ("the brown bear", "1", (5, 8))}),
    }
    meta, mask_dict, gt, counter = {"videos": {}}, {}, {}, 0
    for vid, (frames, exps) in videos.items():
        meta["videos"][vid] = {"expressions": {k: {"exp": e, "obj_id": o} for k, (e, o, _) in exps.items()},
                               "frames": frames}
        write_frames(os.path.join(root, "valid", "JPEGImages", vid), frames)
    for vid in sorted(videos):
        frames, exps = videos[vid]
        for exp_id in sorted(exps):
            text, _, (y0, x0) = exps[exp_id]
            masks = np.stack([moving_box(t, y0, x0) for t in range(len(frames))])
            if vid == "zebra" and exp_id == "1":
                masks[2] = False  # the object leaves the frame
            mask_dict[str(counter)] = _rles(masks)
            gt[(vid, exp_id)] = (text, masks)
            counter += 1
    os.makedirs(os.path.join(root, "meta_expressions", "valid"), exist_ok=True)
    with open(os.path.join(root, "meta_expressions", "valid", "meta_expressions.json"), "w") as f:
        json.dump(meta, f)
    with open(os.path.join(root, "valid", "mask_dict.pkl"), "wb") as f:
        pickle.dump(mask_dict, f)
    return gt


def mevis_u(root, num_videos=3):
    """`mevis/valid_u/`: meta_expressions.json (anno_id lists, ints), mask_dict.json keyed by anno_id, JPEGImages.
    One expression names two objects (the union of their masks); one object is absent on a frame."""
    meta, mask_dict, gt, anno = {"videos": {}}, {}, {}, 0
    for v in range(num_videos):
        vid = f"vid{v}"
        frames = [f"{t:05d}" for t in (2, 0, 1)] if v == 0 else [f"{t:05d}" for t in range(3)]
        objs = []
        for o, (y0, x0) in enumerate([(2, 2 + 4 * v), (18, 24)]):
            masks = np.stack([moving_box(t, y0, x0) for t in range(3)])
            if o == 1:
                masks[0] = False
            mask_dict[str(anno)] = _rles(masks)
            objs.append((anno, masks))
            anno += 1
        exps = {"0": (f"the left shape {v}", [objs[0][0]]), "1": (f"the right shape {v}", [objs[1][0]]),
                "2": (f"both shapes {v}", [objs[0][0], objs[1][0]])}
        meta["videos"][vid] = {"frames": frames, "expressions": {k: {"exp": e, "anno_id": a, "obj_id": a}
                                                                 for k, (e, a) in exps.items()}}
        for k, (e, a) in exps.items():
            gt[(vid, k)] = (e, np.any([m for i, m in objs if i in a], axis=0))
        write_frames(os.path.join(root, "JPEGImages", vid), frames)
    with open(os.path.join(root, "meta_expressions.json"), "w") as f:
        json.dump(meta, f)
    with open(os.path.join(root, "mask_dict.json"), "w") as f:
        json.dump(mask_dict, f)
    return gt


def revos(root):
    """`revos/`: <vid>/<frame>.jpg, meta_expressions_valid_.json (height, width, type_id 0/1/2), mask_dict.json,
    mask_dict_foreground.json ({vid: {"masks_rle": [RLE per frame]}}: every annotated object of the frame,
    also objects no expression names)."""
    meta, mask_dict, fg_dict, gt, foreground, anno = {"videos": {}}, {}, {}, {}, {}, 0
    for v in range(2):
        vid = f"rv{v}"
        frames = [f"{t:05d}" for t in range(4)]
        a = np.stack([moving_box(t, 2, 2 + 6 * v) for t in range(4)])
        b = np.stack([moving_box(t, 20, 26) for t in range(4)])
        b[3] = False
        extra = np.stack([box(0, 3 + 3 * t, 40, 48) for t in range(4)])  # annotated, never referred to
        ids = {}
        for name, m in (("a", a), ("b", b)):
            mask_dict[str(anno)], ids[name] = _rles(m), anno
            anno += 1
        fg = a | b | extra
        fg_dict[vid] = {"masks_rle": [rle(m) for m in fg]}
        foreground[vid] = fg
        exps = {"0": (f"the square on the left in video {v}", [ids["a"]], 0, a),
                "1": (f"which object would you sit on in video {v}?", [ids["b"]], 1, b),
                "2": (f"the purple elephant of video {v}", [], 2, np.zeros_like(a)),
                "3": (f"the two squares of video {v}", [ids["a"], ids["b"]], 0, a | b)}
        meta["videos"][vid] = {"frames": frames, "height": H, "width": W, "expressions": {
            k: {"exp": e, "anno_id": ai, "obj_id": ai, "type_id": t} for k, (e, ai, t, _) in exps.items()}}
        for k, (e, _, t, m) in exps.items():
            gt[(vid, k)] = (e, m, t)
        write_frames(os.path.join(root, vid), frames)
    for name, data in (("meta_expressions_valid_.json", meta), ("mask_dict.json", mask_dict),
                       ("mask_dict_foreground.json", fg_dict)):
        with open(os.path.join(root, name), "w") as f:
            json.dump(data, f)
    return gt, foreground


def mevis_valid(root):
    """`mevis/valid/` (no public ground truth): meta_expressions.json and JPEGImages only."""
    meta, exps_out = {"videos": {}}, {}
    for vid, frames in (("va", ["00003", "00001", "00002"]), ("vb", ["00000", "00004"])):
        exps = {"0": f"the cat of {vid}", "1": f"the dog of {vid}"}
        meta["videos"][vid] = {"frames": frames, "expressions": {k: {"exp": e} for k, e in exps.items()}}
        write_frames(os.path.join(root, "JPEGImages", vid), frames)
        for k, e in exps.items():
            exps_out[(vid, k)] = (e, sorted(frames))
    with open(os.path.join(root, "meta_expressions.json"), "w") as f:
        json.dump(meta, f)
    return exps_out


def poly(y0, y1, x0, x1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def refcoco(root, image_size=(40, 56)):
    """`refcoco/instances.json` + `refcoco/refs(unc).p` (the refer API's pickle: sentences with raw/sent/tokens)
    and `images/COCO_train2014_*.jpg`. Returns {key: (sentence, gt mask)} of the val split."""
    from pycocotools import mask as mask_utils

    h, w = image_size
    os.makedirs(os.path.join(root, "refcoco"), exist_ok=True)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    images, anns, refs, gt = [], [], [], {}
    objects = {9: [(2, 20, 3, 30), (22, 38, 30, 50)], 25: [(5, 15, 5, 15), (10, 35, 20, 54)], 30: [(0, 40, 0, 20)]}
    sentences = {(9, 0): ["the top box", "upper box"], (9, 1): ["the bottom box"], (25, 0): ["the small one"],
                 (25, 1): ["the big one"], (30, 0): ["the tall bar"]}
    ann_id = 100
    for image_id, boxes in objects.items():
        name = f"COCO_train2014_{image_id:012d}.jpg"
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(os.path.join(root, "images", name))
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for o, (y0, y1, x0, x1) in enumerate(boxes):
            seg = poly(y0, y1, x0, x1)
            anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": seg, "iscrowd": 0,
                         "area": float((y1 - y0) * (x1 - x0)), "bbox": [x0, y0, x1 - x0, y1 - y0]})
            split = "train" if image_id == 30 else "val"
            sents = sentences[(image_id, o)]
            ref_id = len(refs)
            refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "file_name": name,
                         "category_id": 1, "sent_ids": list(range(len(sents))),
                         "sentences": [{"raw": s.capitalize(), "sent": s, "sent_id": k, "tokens": s.split()}
                                       for k, s in enumerate(sents)]})
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w))).astype(bool)
            if split == "val":
                for k, s in enumerate(sents):
                    gt[f"{image_id}_{ref_id}_{k}"] = (s, m)
            ann_id += 1
    with open(os.path.join(root, "refcoco", "instances.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}, f)
    with open(os.path.join(root, "refcoco", "refs(unc).p"), "wb") as f:
        pickle.dump(refs, f)
    return gt


def gcg(root):
    """GLaMM's GCG ground truth: val_gcg_coco_caption_gt.json (captions + `labels`), val_gcg_coco_mask_gt.json
    (one RLE per label, COCO instances), and the images. Returns {image id: (caption, labels, masks)}."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    data = {"sa_1": ("A man rides a horse near the river bank.", ["A man", "a horse"],
                     [box(2, 20, 2, 20), box(15, 34, 20, 46)]),
            "sa_2": ("Two dogs play with a red ball on grass.", ["Two dogs", "a red ball"],
                     [box(0, 18, 0, 24), box(25, 33, 30, 38)]),
            "sa_3": ("A lonely tree stands under blue sky today.", ["A lonely tree"], [box(5, 35, 10, 22)])}
    caps = {"images": [], "annotations": []}
    masks = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for n, (key, (caption, labels, ms)) in enumerate(data.items()):  # image value 50 (n + 1) tells them apart
        Image.fromarray(np.full((H, W, 3), 50 * (n + 1), np.uint8)).save(os.path.join(root, "images", f"{key}.png"))
        im = {"id": key, "file_name": f"{key}.png", "height": H, "width": W}
        caps["images"].append(im)
        masks["images"].append(im)
        caps["annotations"].append({"id": len(caps["annotations"]) + 1, "image_id": key, "caption": caption,
                                    "labels": labels})
        for m in ms:
            ys, xs = np.nonzero(m)
            masks["annotations"].append({"id": len(masks["annotations"]) + 1, "image_id": key, "category_id": 1,
                                         "segmentation": rle(m), "iscrowd": 0, "area": int(m.sum()),
                                         "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1,
                                                  int(np.ptp(ys)) + 1]})
    for name, d in (("val_gcg_coco_caption_gt.json", caps), ("val_gcg_coco_mask_gt.json", masks)):
        with open(os.path.join(root, name), "w") as f:
            json.dump(d, f)
    return data


def write_tiny_bert(folder, max_positions=64):
    """A random BERT in the Hugging Face folder format of `bert-base-uncased` (config, weights, vocab.txt)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "horse", "two", "dogs", "ball", "red", "lonely",
             "tree"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=max_positions)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
