"""Evaluation metrics on boolean numpy arrays, with the official toolkits' exact conventions.

Every function returns fractions (1.0 = perfect); the evaluation scripts write them per sample into
`results.jsonl` and multiply the summaries by 100 in `metrics.json`.

Video (davis2017-evaluation, ReVOS's `eval_revos.py`):
- `region_similarity(pred, gt)`: J of one frame, |P & G| / |P | G|, 1 when both are empty (`db_eval_iou`).
- `boundary_f_measure(pred, gt)`: F of one frame (`f_measure`): boundaries by the `seg2bmap` rule,
  matched within `ceil(0.008 * ||(H, W)||)` pixels (disk dilation); precision 1 and recall 0 when only
  the prediction's boundary is empty, precision 0 and recall 1 when only the ground truth's is, both 1
  when both are; F = 2PR / (P + R), 0 when P + R = 0.
- `j_and_f(pred_frames, gt_frames)`: per expression, the means over frames of J and F.
- `pixel_accuracy`: ReVOS's A, the mean over frames of the fraction of correctly labelled pixels.
- `robustness`: ReVOS's R, the mean over frames t of max(0, 1 - |P_t \\ G_t| / (|F_t| + 1e-6)), |F_t| the
  pixels of the video's foreground on frame t (`mask_dict_foreground.json`), as `get_r2vos_robustness`.
Image:
- `ciou_giou(preds, gts)`: cIoU = sum |P & G| / sum |P | G| over expressions; gIoU = mean per-expression
  IoU (1 when both empty). A missing prediction (None) counts as an empty mask: I = 0, U = |G|.
GCG (GLaMM's `eval_gcg` / Sa2VA's `metrics_gcg.py`):
- `gcg_miou`: per image, greedy one-to-one matching on the (pred x gt) IoU matrix, mean of the matched
  IoUs (0 without a match); then the mean over images.
- `gcg_recall`: per image, greedy on the (gt x pred) IoU matrix; the matching stops at the first best
  pair whose IoU < 0.5 or whose phrase similarity < 0.5; recall = matched / ground-truth phrases.
- `mask_ap50`: pycocotools COCOeval `segm` on the ground-truth COCO dict, category 1, stats[1] (AP at
  IoU 0.5).
Captions (pycocoevalcap, COCOEvalCap's scorers): `caption_metrics`.
"""
from __future__ import annotations

import math
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008


def _bool(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(bool)


def _same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    pred, gt = _bool(pred), _bool(gt)
    _same_shape(pred, gt)
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
    b[-1, -1] = 0
    return b


def disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk: the pixels with x^2 + y^2 <= r^2."""
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_f_measure(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE) -> float:
    pred, gt = _bool(pred), _bool(gt)
    _same_shape(pred, gt)
    radius = tolerance if tolerance >= 1 else math.ceil(tolerance * np.linalg.norm(pred.shape))
    fg, gb = seg2bmap(pred), seg2bmap(gt)
    n_fg, n_gt = int(fg.sum()), int(gb.sum())
    if n_fg == 0 or n_gt == 0:
        # the toolkit's conventions: both empty P = R = 1 (F = 1); one empty, P = 1 and R = 0 or P = 0 and
        # R = 1 (F = 0)
        return float(n_fg == n_gt)
    kernel = disk(int(radius))
    fg_dil = cv2.dilate(fg.view(np.uint8), kernel) > 0
    gt_dil = cv2.dilate(gb.view(np.uint8), kernel) > 0
    precision = float((fg & gt_dil).sum()) / n_fg
    recall = float((gb & fg_dil).sum()) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _frames(pred_frames: Sequence, gt_frames: Sequence, *others: Sequence) -> None:
    for seq in (gt_frames,) + others:
        if len(seq) != len(pred_frames):
            raise ValueError(f"{len(pred_frames)} predicted frames for {len(seq)} ground-truth frames")
    if len(gt_frames) == 0:
        raise ValueError("an expression needs at least one frame")


def j_and_f(pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray]) -> Tuple[float, float]:
    """(J, F) of one expression: means over its frames."""
    _frames(pred_frames, gt_frames)
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
        _same_shape(p, g)
        i, u = int((p & g).sum()), int((p | g).sum())
        inter += i
        union += u
        ious.append(i / u if u else 1.0)
    return {"ciou": inter / union if union else 1.0, "giou": float(np.mean(ious)) if ious else 0.0}


def pixel_accuracy(pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray]) -> float:
    """ReVOS A: mean over frames of the fraction of correctly labelled pixels."""
    _frames(pred_frames, gt_frames)
    return float(np.mean([(_bool(p) == _bool(g)).mean() for p, g in zip(pred_frames, gt_frames)]))


def robustness(pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray],
               foreground_areas: Sequence[int]) -> float:
    """ReVOS R: mean over frames of max(0, 1 - |P \\ G| / (|F_t| + 1e-6)), |F_t| = the number of the video's
    foreground pixels on that frame (with none: 1 without a false positive, else 0)."""
    _frames(pred_frames, gt_frames, foreground_areas)
    scores = []
    for p, g, area in zip(pred_frames, gt_frames, foreground_areas):
        false_pos = int((_bool(p) & ~_bool(g)).sum())
        scores.append(max(0.0, 1.0 - false_pos / (int(area) + 1e-6)))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------- GCG
def iou_matrix(rows: Sequence[np.ndarray], cols: Sequence[np.ndarray]) -> np.ndarray:
    """IoU of every (row mask, column mask) pair; 0 for two empty masks (nothing to match)."""
    out = np.zeros((len(rows), len(cols)))
    for i, a in enumerate(rows):
        for j, b in enumerate(cols):
            a_, b_ = _bool(a), _bool(b)
            union = int((a_ | b_).sum())
            out[i, j] = int((a_ & b_).sum()) / union if union else 0.0
    return out


def greedy_matches(ious: np.ndarray, admissible: Callable[[int, int], bool] = lambda i, j: True):
    """One-to-one (row, col, iou) pairs, repeatedly taking the highest remaining IoU while it is > 0 and
    `admissible(row, col)` holds (the first inadmissible best pair ends the matching, as GLaMM's)."""
    ious = ious.copy()
    pairs = []
    while ious.size and ious.max() > 0:
        i, j = np.unravel_index(int(ious.argmax()), ious.shape)
        if not admissible(int(i), int(j)):
            break
        pairs.append((int(i), int(j), float(ious[i, j])))
        ious[i, :] = 0
        ious[:, j] = 0
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
    """Bag-of-words F1 between two phrases (lower-cased, punctuation stripped); a model-free phrase
    similarity for `gcg_recall` when no BERT model is given."""
    ta, tb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    if ta == tb:  # identical, or both without words
        return 1.0
    common = sum(min(ta.count(w), tb.count(w)) for w in set(ta))
    if common == 0:  # also when one side has no words
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def gcg_recall(images, similarity: Callable[[str, str], float] = word_f1, iou_threshold: float = 0.5,
               text_threshold: float = 0.5) -> float:
    """GLaMM's recall: per image, greedy matching on the (gt x pred) IoU matrix that stops at the first
    best pair with IoU < 0.5 or phrase similarity < 0.5; matched pairs / ground-truth phrases over all
    images. GLaMM's similarity is the cosine of mean-pooled BERT states (`BertSimilarity`).
    `images`: [{'pred': [masks], 'gt': [masks], 'pred_phrases': [...], 'gt_phrases': [...]}]."""
    hit = total = 0
    for im in images:
        total += len(im["gt_phrases"])
        ious = iou_matrix(im["gt"], im["pred"])
        sims = np.array([[similarity(g, p) for p in im["pred_phrases"]] for g in im["gt_phrases"]])
        hit += len(greedy_matches(ious, lambda i, j: ious[i, j] >= iou_threshold and sims[i, j] >= text_threshold))
    return hit / total if total else 0.0


class BertSimilarity:
    """GLaMM's phrase similarity: cosine of the mean over all tokens of BERT's last hidden states
    (`bert-base-uncased`, truncation at 512 tokens), from a local Hugging Face folder."""

    def __init__(self, path: str):
        import torch
        from transformers import AutoTokenizer, BertModel

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = BertModel.from_pretrained(path).eval()
        self.cache: Dict[str, np.ndarray] = {}

    def embed(self, text: str) -> np.ndarray:
        if text not in self.cache:
            with self.torch.no_grad():
                out = self.model(**self.tokenizer(text, return_tensors="pt", max_length=512, truncation=True))
            self.cache[text] = out.last_hidden_state[0].mean(0).double().numpy()
        return self.cache[text]

    def __call__(self, a: str, b: str) -> float:
        x, y = self.embed(a), self.embed(b)
        return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def mask_ap50(gt_coco: dict, detections: List[dict]) -> float:
    """COCO mask AP at IoU 0.5 as GLaMM computes it: COCOeval('segm') of `detections` ([{image_id,
    category_id, segmentation (RLE), score}]) against the ground-truth COCO dict, category 1; 0 without
    detections."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_coco
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(detections), iouType="segm")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(float(ev.stats[1]), 0.0)  # COCOeval's -1 (no ground truth) is 0 here


# ---------------------------------------------------------------------------------------------- captions
# what pycocoevalcap drops after PTB tokenisation (its `` and '' are PTB's quotes); brackets stay, as PTB's
# lower-cased names (pycocoevalcap's "-LRB-" never matches the lower-cased "-lrb-")
PTB_PUNCTUATION = {"'", '"', "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", "[": "-lsb-", "]": "-rsb-"}
PTB_TOKEN = re.compile(r"n't\b|'(?:s|re|ve|ll|d|m)\b|\w+?(?=n't\b)|\w+(?:[-.]\w+)*|\.\.\.|--|[^\w\s]")
SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")


def python_tokenize(caption: str) -> str:
    """The stand-in for Stanford's PTBTokenizer (`-lowerCase`) when Java is absent, then pycocoevalcap's
    punctuation removal: clitics split off ("does n't", "man 's"), hyphenated words and decimals kept,
    brackets as "-lrb-" ... ."""
    tokens = (PTB_BRACKETS.get(t, t) for t in PTB_TOKEN.findall(caption.lower()))
    return " ".join(t for t in tokens if t not in PTB_PUNCTUATION)


def caption_metrics(gt_captions: Dict[str, Sequence[str]], predictions: Dict[str, str],
                    java: Optional[str] = "auto") -> Dict[str, object]:
    """Bleu_4, ROUGE_L, CIDEr (pure Python), METEOR and SPICE (Java) with pycocoevalcap's scorers, as
    COCOEvalCap runs them, on {key: [reference captions]} and {key: prediction} (a missing prediction is
    an empty caption). Captions are tokenised by Stanford's PTBTokenizer when Java runs, else by
    `python_tokenize`. Returns fractions, `caption_tokenizer`, and `caption_skipped` = {metric: why}."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    java = shutil.which("java") if java == "auto" else java
    keys = sorted(gt_captions)
    if not keys:
        raise ValueError("caption metrics need at least one reference caption")
    refs = {k: [{"caption": c} for c in gt_captions[k]] for k in keys}
    hyps = {k: [{"caption": predictions.get(k, "")}] for k in keys}
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        gts, res = PTBTokenizer().tokenize(refs), PTBTokenizer().tokenize(hyps)
        out: Dict[str, object] = {"caption_tokenizer": "PTBTokenizer"}
    else:
        gts = {k: [python_tokenize(c["caption"]) for c in v] for k, v in refs.items()}
        res = {k: [python_tokenize(c["caption"]) for c in v] for k, v in hyps.items()}
        out = {"caption_tokenizer": "python (Java not found: PTBTokenizer needs it)"}
    out["Bleu_4"] = float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    skipped = {}
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        out["METEOR"] = float(meteor.compute_score(gts, res)[0])
        del meteor  # stops its Java process
    else:
        skipped["METEOR"] = "needs Java (the METEOR 1.5 jar), and no `java` is on PATH"
    import pycocoevalcap  # a namespace package: no __file__

    spice_lib = os.path.join(list(pycocoevalcap.__path__)[0], "spice", "lib")
    missing = [j for j in SPICE_JARS if not os.path.isfile(os.path.join(spice_lib, j))]
    if not java:
        skipped["SPICE"] = "needs Java, and no `java` is on PATH"
    elif missing:
        skipped["SPICE"] = (f"needs {', '.join(missing)} in {spice_lib} (pycocoevalcap would download them; "
                            "nothing downloads at run time)")
    else:
        from pycocoevalcap.spice.spice import Spice

        out["SPICE"] = float(Spice().compute_score(gts, res)[0])
    out["caption_skipped"] = skipped
    return out
