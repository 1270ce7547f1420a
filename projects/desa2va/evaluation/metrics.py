"""Segmentation metrics on boolean numpy arrays, with the standard toolkits' exact conventions.

- `region_similarity(pred, gt)`: J of one frame, |P & G| / |P | G|, 1 when both are empty
  (davis2017-evaluation's `db_eval_iou`).
- `boundary_f_measure(pred, gt)`: F of one frame (davis2017-evaluation's `f_measure`): boundaries by
  the `seg2bmap` rule, matched within `ceil(0.008 * ||(H, W)||)` pixels (disk dilation); precision
  1 and recall 0 when only the prediction's boundary is empty, precision 0 and recall 1 when only the
  ground truth's is, both 1 when both are; F = 2PR / (P + R), 0 when P + R = 0.
- `j_and_f(pred_frames, gt_frames)`: per expression, the means over frames of J and F.
- `ciou_giou(preds, gts)`: cIoU = sum |P & G| / sum |P | G| over expressions; gIoU = mean per-expression
  IoU (1 when both empty). A missing prediction (None) counts as an empty mask: I = 0, U = |G|.
- `pixel_accuracy`, `robustness`: ReVOS's A (mean over frames of the fraction of correct pixels) and R
  (mean over frames of max(0, 1 - |P \\ G| / |U|), U = the video's annotated foreground, the union of
  all its objects over all frames).
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008


def _bool(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(bool)


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    pred, gt = _bool(pred), _bool(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map of a binary mask: a pixel is on the boundary when it differs from its east, south or
    south-east neighbour (the last row compares east only, the last column south only)."""
    seg = _bool(seg)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk: the pixels with x^2 + y^2 <= r^2."""
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    pred, gt = _bool(pred), _bool(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    radius = tolerance if tolerance >= 1 else int(math.ceil(tolerance * np.linalg.norm(pred.shape)))
    fg, gb = seg2bmap(pred), seg2bmap(gt)
    kernel = disk(int(radius))
    fg_dil = cv2.dilate(fg.astype(np.uint8), kernel) > 0
    gt_dil = cv2.dilate(gb.astype(np.uint8), kernel) > 0
    n_fg, n_gt = int(fg.sum()), int(gb.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float((fg & gt_dil).sum()) / n_fg
        recall = float((gb & fg_dil).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def j_and_f(pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray]) -> Tuple[float, float]:
    """(J, F) of one expression: means over its frames."""
    if len(pred_frames) != len(gt_frames):
        raise ValueError(f"{len(pred_frames)} predicted frames for {len(gt_frames)} ground-truth frames")
    if len(gt_frames) == 0:
        raise ValueError("an expression needs at least one frame")
    js = [region_similarity(p, g) for p, g in zip(pred_frames, gt_frames)]
    fs = [boundary_f_measure(p, g) for p, g in zip(pred_frames, gt_frames)]
    return float(np.mean(js)), float(np.mean(fs))


def ciou_giou(preds: Sequence[Optional[np.ndarray]], gts: Sequence[np.ndarray]) -> Dict[str, float]:
    """{'ciou', 'giou'} over expressions; a None prediction is an empty mask (a miss, not a skip)."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    inter = union = 0
    ious = []
    for p, g in zip(preds, gts):
        g = _bool(g)
        p = np.zeros_like(g) if p is None else _bool(p)
        if p.shape != g.shape:
            raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in size")
        i, u = int((p & g).sum()), int((p | g).sum())
        inter += i
        union += u
        ious.append(1.0 if u == 0 else i / u)
    return {"ciou": inter / union if union else 1.0, "giou": float(np.mean(ious)) if ious else 0.0}


def pixel_accuracy(pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray]) -> float:
    """ReVOS A: mean over frames of the fraction of correctly labelled pixels."""
    return float(np.mean([(_bool(p) == _bool(g)).mean() for p, g in zip(pred_frames, gt_frames)]))


def robustness(pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray],
               video_foreground: np.ndarray) -> float:
    """ReVOS R: mean over frames of max(0, 1 - |P \\ G| / |U|); with an empty U, 1 for no false positive
    else 0."""
    area = int(_bool(video_foreground).sum())
    scores = []
    for p, g in zip(pred_frames, gt_frames):
        fp = int((_bool(p) & ~_bool(g)).sum())
        scores.append(max(0.0, 1.0 - fp / area) if area else float(fp == 0))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------- GCG
def iou_matrix(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(preds), len(gts)))
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            out[i, j] = region_similarity(p, g) if (_bool(p).any() or _bool(g).any()) else 0.0
    return out


def greedy_matches(ious: np.ndarray):
    """One-to-one (pred, gt, iou) pairs, repeatedly taking the highest remaining IoU (> 0)."""
    ious = ious.copy()
    pairs = []
    while ious.size and ious.max() > 0:
        i, j = np.unravel_index(int(ious.argmax()), ious.shape)
        pairs.append((int(i), int(j), float(ious[i, j])))
        ious[i, :] = -1
        ious[:, j] = -1
    return pairs


def gcg_miou(images: Sequence[Dict[str, Sequence[np.ndarray]]]) -> float:
    """GLaMM's mIoU: per image, the mean IoU of greedily matched (pred, gt) pairs (0 without any match);
    then the mean over images. `images`: [{'pred': [masks], 'gt': [masks]}]."""
    per_image = []
    for im in images:
        pairs = greedy_matches(iou_matrix(im["pred"], im["gt"]))
        per_image.append(float(np.mean([p[2] for p in pairs])) if pairs else 0.0)
    return float(np.mean(per_image)) if per_image else 0.0


def word_f1(a: str, b: str) -> float:
    """Bag-of-words F1 between two phrases (lower-cased, punctuation stripped)."""
    import re
    ta, tb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    if not ta or not tb:
        return float(ta == tb)
    common = sum(min(ta.count(w), tb.count(w)) for w in set(ta))
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def gcg_recall(images, iou_threshold: float = 0.5, text_threshold: float = 0.5, similarity=word_f1) -> float:
    """Fraction of ground-truth (phrase, mask) pairs matched by a prediction with IoU >= 0.5 and phrase
    similarity >= 0.5 (greedy one-to-one over IoU). GLaMM scores phrase similarity with a BERT model;
    `similarity` defaults to word-level F1, which needs no model (pass another function to match GLaMM).
    `images`: [{'pred': [masks], 'gt': [masks], 'pred_phrases': [...], 'gt_phrases': [...]}]."""
    hit = total = 0
    for im in images:
        total += len(im["gt"])
        ious = iou_matrix(im["pred"], im["gt"])
        for i, j, v in greedy_matches(ious):
            if v >= iou_threshold and similarity(im["pred_phrases"][i], im["gt_phrases"][j]) >= text_threshold:
                hit += 1
    return hit / total if total else 0.0


def mask_ap50(images) -> float:
    """COCO mask AP at IoU 0.5 (pycocotools COCOeval, one class, every predicted mask scored 1.0 unless
    'scores' are given). `images`: [{'pred': [masks], 'gt': [masks], 'scores'?: [...]}]."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from ..common.masks import encode_rle

    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    dets = []
    for k, im in enumerate(images):
        h, w = (im["gt"][0] if len(im["gt"]) else im["pred"][0]).shape
        gt["images"].append({"id": k, "height": int(h), "width": int(w)})
        for g in im["gt"]:
            rle = encode_rle(g)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": k, "category_id": 1,
                                      "segmentation": rle, "area": float(_bool(g).sum()), "iscrowd": 0,
                                      "bbox": [0, 0, int(w), int(h)]})
        for n, p in enumerate(im["pred"]):
            dets.append({"image_id": k, "category_id": 1, "segmentation": encode_rle(p),
                         "score": float(im.get("scores", [1.0] * len(im["pred"]))[n])})
    if not gt["annotations"]:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        res = coco.loadRes(dets) if dets else None
        if res is None:
            return 0.0
        ev = COCOeval(coco, res, iouType="segm")
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


# ---------------------------------------------------------------------------------------------- captions
def caption_metrics(gt_captions, predictions):
    """METEOR and CIDEr through pycocoevalcap, or a note saying why they were skipped."""
    try:
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError:
        return {"caption_metrics": "skipped: pycocoevalcap is not installed (pip install pycocoevalcap; METEOR "
                                   "also needs Java)"}
    gts = {k: [c] for k, c in gt_captions.items()}
    res = {k: [predictions.get(k, "")] for k in gt_captions}
    out = {"CIDEr": float(Cider().compute_score(gts, res)[0])}
    try:
        out["METEOR"] = float(Meteor().compute_score(gts, res)[0])
    except Exception as e:  # Java missing
        out["METEOR"] = f"skipped: {type(e).__name__}: {e}"
    return out
