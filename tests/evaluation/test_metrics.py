"""metrics.py on hand-worked cases and on values the official code computes (davis2017-evaluation's
`db_eval_iou` / `f_measure`, ReVOS's `get_r2vos_*`, pycocotools' COCOeval, pycocoevalcap), each expected
value derived here, never by the function under test."""
import math
import shutil

import numpy as np
import pytest

import numpy_metrics as nm
import release_fixtures as rf
from projects.desa2va.evaluation import metrics as M
from projects.desa2va.evaluation.metrics import (boundary_f_measure, ciou_giou, disk, j_and_f, pixel_accuracy,
                                                 region_similarity, robustness, seg2bmap)
from scripted import rle


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def disc(h, w, cy, cx, r):
    yy, xx = np.ogrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


# ------------------------------------------------------------------------------------------------ J
def test_region_similarity_cases():
    empty, obj = np.zeros((10, 12), bool), box(10, 12, 2, 6, 3, 9)
    assert region_similarity(empty, empty) == 1.0            # both empty
    assert region_similarity(empty, obj) == 0.0              # empty prediction
    assert region_similarity(obj, empty) == 0.0              # empty ground truth
    assert region_similarity(obj, obj) == 1.0
    half = box(10, 12, 2, 6, 3, 6)
    assert region_similarity(half, obj) == 12 / 24
    assert region_similarity(half.astype(np.uint8) * 255, obj) == 12 / 24  # 0/255 masks are masks
    px = box(10, 12, 4, 5, 7, 8)                             # one-pixel object
    assert region_similarity(px, px) == 1.0 and region_similarity(box(10, 12, 4, 5, 8, 9), px) == 0.0
    with pytest.raises(ValueError, match=r"^prediction \(10, 12\) and ground truth \(12, 10\) differ in size$"):
        region_similarity(obj, obj.T)


# ------------------------------------------------------------------------------------------------ F
def test_seg2bmap_by_hand():
    seg = box(4, 4, 1, 3, 1, 3)  # a 2x2 square
    expected = np.array([[1, 1, 1, 0],
                         [1, 0, 1, 0],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]], bool)
    assert np.array_equal(seg2bmap(seg), expected)
    px = box(5, 5, 2, 3, 2, 3)  # one pixel: itself and its north, west and north-west neighbours
    assert set(zip(*np.nonzero(seg2bmap(px)))) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    corner = box(3, 3, 2, 3, 2, 3)  # the bottom-right pixel: the last row and column compare one way only
    assert set(zip(*np.nonzero(seg2bmap(corner)))) == {(1, 1), (1, 2), (2, 1)}
    bottom = box(3, 4, 2, 3, 0, 4)  # the whole last row: only its east neighbours count there (none differ)
    assert set(zip(*np.nonzero(seg2bmap(bottom)))) == {(1, 0), (1, 1), (1, 2), (1, 3)}
    right = box(4, 3, 0, 4, 2, 3)  # the whole last column
    assert set(zip(*np.nonzero(seg2bmap(right)))) == {(0, 1), (1, 1), (2, 1), (3, 1)}
    assert seg2bmap(np.ones((3, 3), bool)).sum() == 0


def test_disk_matches_its_definition():
    assert np.array_equal(disk(1), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))
    d = disk(2)
    assert d.shape == (5, 5) and d.sum() == 13 and d[0, 2] and not d[0, 1] and d.dtype == np.uint8
    assert np.array_equal(disk(0), np.ones((1, 1), np.uint8))


# (prediction, ground truth) -> (J, F) as davis2017-evaluation's db_eval_iou / f_measure return them
OFFICIAL = {
    "disc_shift_480x854": (lambda: (disc(480, 854, 240, 400, 100), disc(480, 854, 249, 404, 100)),
                           0.8820463667405499, 0.6604477611940298),
    "disc_vs_box_480x854": (lambda: (disc(480, 854, 240, 400, 100), box(480, 854, 150, 330, 310, 490)),
                            0.836883311265903, 0.5293507571043351),
    "two_boxes_36x48": (lambda: (box(36, 48, 2, 12, 2, 14) | box(36, 48, 20, 30, 30, 44), box(36, 48, 3, 13, 4, 16)),
                        0.3103448275862069, 0.3676470588235294),
    "ring_64x64": (lambda: (disc(64, 64, 32, 32, 20) & ~disc(64, 64, 32, 32, 10), disc(64, 64, 30, 33, 18)),
                   0.5480540111199365, 0.33015237802062486),
}


@pytest.mark.parametrize("case", sorted(OFFICIAL))
def test_j_and_f_equal_the_official_code(case):
    make, j, f = OFFICIAL[case]
    p, g = make()
    assert region_similarity(p, g) == pytest.approx(j, abs=1e-15)
    assert boundary_f_measure(p, g) == pytest.approx(f, abs=1e-15)


def test_boundary_f_cases():
    empty = np.zeros((40, 60), bool)
    obj = box(40, 60, 10, 25, 10, 40)
    assert boundary_f_measure(empty, empty) == 1.0              # both empty: P = R = 1
    assert boundary_f_measure(empty, obj) == 0.0                # P = 1, R = 0
    assert boundary_f_measure(obj, empty) == 0.0                # P = 0, R = 1
    assert boundary_f_measure(obj, obj) == 1.0
    px = box(40, 60, 20, 21, 30, 31)
    assert boundary_f_measure(px, px) == 1.0                    # one-pixel object
    # tolerance ceil(0.008 * ||(40, 60)||) = ceil(0.577) = 1 pixel: a 1-px shift still matches fully,
    assert boundary_f_measure(box(40, 60, 11, 26, 10, 40), obj) == 1.0
    # a 5-px shift does not: numpy's own disk dilation says which boundary pixels find a partner within 1 px
    shifted = box(40, 60, 15, 30, 10, 40)
    assert boundary_f_measure(shifted, obj) == pytest.approx(nm.f(shifted, obj, 1), abs=1e-15)
    assert 0 < boundary_f_measure(shifted, obj) < 1


def test_boundary_f_one_boundary_pixel():
    """A pixel in the top-left corner has a boundary of one pixel (no north or west neighbour)."""
    corner, empty = box(20, 20, 0, 1, 0, 1), np.zeros((20, 20), bool)
    assert seg2bmap(corner).sum() == 1
    assert boundary_f_measure(empty, corner) == 0.0 and boundary_f_measure(corner, empty) == 0.0
    assert boundary_f_measure(corner, corner) == 1.0


def test_boundary_f_zero_and_pixel_tolerance():
    a, b = box(40, 60, 0, 3, 0, 3), box(40, 60, 30, 33, 50, 53)   # far apart: no boundary pixel matches
    assert boundary_f_measure(a, b) == 0.0
    g = box(30, 30, 10, 20, 10, 20)
    p = box(30, 30, 13, 23, 10, 20)  # shifted by 3 rows
    assert boundary_f_measure(p, g, tolerance=2) == pytest.approx(nm.f(p, g, 2), abs=1e-15)   # >= 1: pixels
    assert boundary_f_measure(p, g, tolerance=1) == pytest.approx(nm.f(p, g, 1), abs=1e-15)   # not ceil(1 * 42.4)
    assert boundary_f_measure(p, g, tolerance=0.05) == pytest.approx(nm.f(p, g, 3), abs=1e-15)  # ceil(0.05 * 42.4)
    assert nm.f(p, g, 1) < nm.f(p, g, 2) < nm.f(p, g, 3) == 1.0


def test_tolerance_grows_with_the_frame_diagonal():
    # 480 x 854 (DAVIS): ceil(0.008 * 979.7) = 8 px; an 8-px shift of a large box still matches perfectly
    gt = box(480, 854, 100, 300, 100, 500)
    assert boundary_f_measure(box(480, 854, 108, 308, 100, 500), gt) == 1.0
    assert boundary_f_measure(box(480, 854, 109, 309, 100, 500), gt) < 1.0
    assert M.BOUNDARY_TOLERANCE == 0.008


def test_border_touching_and_non_square_frames():
    full = np.ones((30, 50), bool)
    assert region_similarity(full, full) == 1.0 and boundary_f_measure(full, full) == 1.0
    left = box(30, 50, 0, 30, 0, 10)  # touches three borders
    assert boundary_f_measure(left, left) == 1.0
    assert boundary_f_measure(box(30, 50, 0, 30, 0, 11), left) == 1.0   # within 1 px
    with pytest.raises(ValueError, match="differ in size"):
        boundary_f_measure(left, left.T)


def test_j_and_f_means_over_frames_and_checks_lengths():
    left = box(30, 50, 0, 30, 0, 10)
    wide = box(30, 50, 0, 30, 0, 20)
    j, f = j_and_f([left, left, np.zeros_like(left)], [left, wide, np.zeros_like(left)])
    assert j == pytest.approx((1 + 0.5 + 1) / 3)
    assert f == pytest.approx((1 + boundary_f_measure(left, wide) + 1) / 3) and boundary_f_measure(left, wide) < 1
    assert isinstance(j, float) and isinstance(f, float)
    with pytest.raises(ValueError, match=r"^2 predicted frames for 1 ground-truth frames$"):
        j_and_f([np.zeros((2, 2), bool)] * 2, [np.zeros((2, 2), bool)])
    with pytest.raises(ValueError, match=r"^an expression needs at least one frame$"):
        j_and_f([], [])


# ------------------------------------------------------------------------------------------------ images
def test_ciou_counts_misses_and_giou():
    g1, g2 = box(10, 10, 0, 5, 0, 4), box(10, 10, 0, 2, 0, 2)   # |G1| = 20, |G2| = 4
    p2 = box(10, 10, 0, 2, 0, 1)                                # I = 2, U = 4
    r = ciou_giou([None, p2], [g1, g2])
    assert r == {"ciou": 2 / (20 + 4), "giou": (0 + 0.5) / 2}   # the miss adds |G1| to the union
    assert ciou_giou([p2], [g2])["ciou"] > r["ciou"]            # what skipping the miss would report
    p1 = box(10, 10, 0, 5, 0, 2)                                # I = 10, U = 20
    assert ciou_giou([p1, p2], [g1, g2]) == {"ciou": 12 / 24, "giou": 0.5}
    both_empty = ciou_giou([np.zeros((3, 3), bool)], [np.zeros((3, 3), bool)])
    assert both_empty == {"ciou": 1.0, "giou": 1.0}
    assert ciou_giou([], []) == {"ciou": 1.0, "giou": 0.0}
    with pytest.raises(ValueError, match=r"^1 predictions for 2 ground truths$"):
        ciou_giou([p2], [g1, g2])
    with pytest.raises(ValueError, match="differ in size"):
        ciou_giou([p2.T[:5]], [g2])


# ------------------------------------------------------------------------------------------------ ReVOS
def test_revos_accuracy_and_robustness():
    g = [box(4, 5, 0, 2, 0, 2), np.zeros((4, 5), bool)]
    p = [box(4, 5, 0, 2, 0, 3), box(4, 5, 3, 4, 0, 5)]         # 2 and 5 false-positive pixels
    assert pixel_accuracy(p, g) == pytest.approx(((20 - 2) / 20 + (20 - 5) / 20) / 2, abs=1e-15)
    # |F_t| = 10 and 8 foreground pixels on the two frames: the official (area + 1e-6) denominator
    assert robustness(p, g, [10, 8]) == pytest.approx(((1 - 2 / (10 + 1e-6)) + (1 - 5 / (8 + 1e-6))) / 2, abs=1e-15)
    assert robustness(p, g, [10, 8]) != pytest.approx(((1 - 2 / 10) + (1 - 5 / 8)) / 2, abs=1e-9)
    assert robustness([np.ones((4, 5), bool)], [np.zeros((4, 5), bool)], [10]) == 0.0  # clipped at 0
    none = np.zeros((4, 5), bool)
    assert robustness([none], [none], [0]) == 1.0 and robustness([box(4, 5, 0, 1, 0, 1)], [none], [0]) == 0.0
    assert robustness([box(4, 5, 0, 1, 0, 1)], [none], [1]) == pytest.approx(1e-6, rel=1e-3)  # not clipped: 1 - 1/1.000001
    with pytest.raises(ValueError, match=r"^2 predicted frames for 1 ground-truth frames$"):
        robustness(p, g, [10])
    with pytest.raises(ValueError, match=r"^1 predicted frames for 2 ground-truth frames$"):
        robustness(p[:1], g, [10, 8])
    with pytest.raises(ValueError, match=r"^2 predicted frames for 1 ground-truth frames$"):
        robustness(p, g[:1], [10, 8])
    with pytest.raises(ValueError, match="2 predicted frames for 1"):
        pixel_accuracy(p, g[:1])


# ------------------------------------------------------------------------------------------------ GCG
def test_iou_matrix_and_greedy_matching():
    a, b, c = box(10, 10, 0, 5, 0, 5), box(10, 10, 0, 5, 0, 10), box(10, 10, 5, 10, 5, 10)
    ious = M.iou_matrix([a, c], [b, c, np.zeros((10, 10), bool)])
    assert np.allclose(ious, [[0.5, 0, 0], [0, 1, 0]])
    assert M.iou_matrix([np.zeros((2, 2), bool)], [np.zeros((2, 2), bool)])[0, 0] == 0.0  # two empty masks
    m = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert M.greedy_matches(m) == [(0, 0, 0.9), (1, 1, 0.1)]  # greedy, one-to-one (not the optimal sum)
    assert M.greedy_matches(np.array([[0.4, 0.0], [0.7, 0.0]])) == [(1, 0, 0.7)]  # a zero IoU never matches
    assert M.greedy_matches(np.zeros((0, 3))) == []
    # the first inadmissible best pair ends the matching (GLaMM's `break`)
    assert M.greedy_matches(m, lambda i, j: (i, j) != (0, 0)) == []
    assert M.greedy_matches(m, lambda i, j: (i, j) != (1, 1)) == [(0, 0, 0.9)]
    assert np.array_equal(m, [[0.9, 0.8], [0.85, 0.1]])  # the input is left as it was


def test_gcg_miou():
    g1, g2 = box(20, 20, 0, 10, 0, 10), box(20, 20, 10, 20, 10, 20)
    p1 = box(20, 20, 0, 10, 0, 5)                               # IoU 0.5 with g1
    p2 = box(20, 20, 10, 20, 10, 18)                            # IoU 0.8 with g2
    assert M.gcg_miou([{"pred": [p1], "gt": [g1, g2]}]) == 0.5  # matched pairs only
    assert M.gcg_miou([{"pred": [p2, p1], "gt": [g1, g2]}]) == pytest.approx((0.5 + 0.8) / 2)
    assert M.gcg_miou([{"pred": [p1], "gt": [g1]}, {"pred": [], "gt": [g1]}]) == 0.25  # no match: 0
    assert M.gcg_miou([]) == 0.0


def test_word_f1():
    assert M.word_f1("a dog", "the dog") == 0.5
    assert M.word_f1("The Dog!", "the dog") == 1.0             # case and punctuation
    assert M.word_f1("dog dog cat", "dog") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))  # counts clipped
    assert M.word_f1("", "") == 1.0 and M.word_f1("", "dog") == 0.0 and M.word_f1("...", "dog") == 0.0
    assert M.word_f1("a cat", "the dog") == 0.0
    assert M.word_f1("big red dog", "red dog") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_gcg_recall_follows_glamm():
    g1, g2 = box(20, 20, 0, 10, 0, 10), box(20, 20, 10, 20, 10, 20)
    p1, p2 = box(20, 20, 0, 10, 0, 5), box(20, 20, 10, 20, 10, 18)  # IoU 0.5 with g1 (the boundary), 0.8 with g2
    im = {"pred": [p1, p2], "gt": [g1, g2], "pred_phrases": ["a dog", "a ball"], "gt_phrases": ["the dog", "a ball"]}
    assert M.gcg_recall([im]) == 1.0                           # IoU 0.5 and word F1 0.5 both admit
    # the best pair (g2, p2) fails the phrase test: GLaMM stops there, though (g1, p1) would qualify
    assert M.gcg_recall([dict(im, pred_phrases=["a dog", "the cat"])]) == 0.0
    # the best pair qualifies, the next one (IoU 0.5 but phrase F1 0) ends the matching
    assert M.gcg_recall([dict(im, pred_phrases=["a cat", "a ball"])]) == 0.5
    two = [im, {"pred": [], "gt": [g1], "pred_phrases": [], "gt_phrases": ["a cup"]}]
    assert M.gcg_recall(two) == pytest.approx(2 / 3)           # phrases of all images count
    assert M.gcg_recall([dict(im, pred=[box(20, 20, 0, 10, 0, 4), p2])]) == 0.5  # IoU 0.4 < 0.5
    assert M.gcg_recall([im], similarity=lambda a, b: 0.49) == 0.0
    assert M.gcg_recall([im], similarity=lambda a, b: 0.5) == 1.0
    assert M.gcg_recall([im], iou_threshold=0.6) == 0.5 and M.gcg_recall([im], text_threshold=0.6) == 0.5
    assert M.gcg_recall([]) == 0.0


def test_bert_similarity_is_glamms(tmp_path):
    """Cosine of the mean over all tokens of the last hidden states, truncated at 512 tokens."""
    import torch
    from transformers import AutoTokenizer, BertModel

    rf.write_tiny_bert(tmp_path / "bert", max_positions=600)
    sim = M.BertSimilarity(str(tmp_path / "bert"))
    tok, model = AutoTokenizer.from_pretrained(str(tmp_path / "bert")), BertModel.from_pretrained(str(tmp_path / "bert"))

    def mean_state(ids):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).double().numpy()
    ids = tok("a man")["input_ids"]
    assert np.allclose(sim.embed("a man"), mean_state(ids), atol=1e-12)
    long = " ".join(["dogs"] * 700)                              # 702 tokens: the first 511 + [SEP] are used
    cut = tok(long)["input_ids"][:511] + [tok.sep_token_id]
    assert np.allclose(sim.embed(long), mean_state(cut), atol=1e-12)
    x, y = mean_state(ids), mean_state(tok("a red ball")["input_ids"])
    assert sim("a man", "a red ball") == pytest.approx(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))), abs=1e-12)
    assert sim("a man", "a man") == pytest.approx(1.0) and set(sim.cache) == {"a man", "a red ball", long}


def _gt_coco(images):
    """A COCO instances dict (category 1) of {image id: [masks]}."""
    out = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for image_id, masks in images.items():
        out["images"].append({"id": image_id, "height": 30, "width": 30})
        for m in masks:
            out["annotations"].append({"id": len(out["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                                       "segmentation": rle(m), "area": int(m.sum()), "iscrowd": 0, "bbox": [0, 0, 1, 1]})
    return out


def _det(image_id, m, score=1.0):
    return {"image_id": image_id, "category_id": 1, "segmentation": rle(m), "score": score}


def test_mask_ap50_hand_worked():
    g1, g2 = box(30, 30, 0, 10, 0, 10), box(30, 30, 15, 30, 15, 30)
    wrong = box(30, 30, 0, 10, 20, 30)
    gt = _gt_coco({1: [g1, g2]})
    assert M.mask_ap50(gt, [_det(1, g1), _det(1, g2)]) == pytest.approx(1.0)
    # TP (0.9) then FP (0.8): precision 1 up to recall 0.5, nothing beyond: 51 of COCO's 101 recall points
    assert M.mask_ap50(gt, [_det(1, g1, 0.9), _det(1, wrong, 0.8)]) == pytest.approx(51 / 101)
    # FP first: precision 0.5 at recall 0.5
    assert M.mask_ap50(gt, [_det(1, g1, 0.8), _det(1, wrong, 0.9)]) == pytest.approx(0.5 * 51 / 101)
    # IoU 0.6: a match at 0.5 (not at 0.75)
    assert M.mask_ap50(_gt_coco({1: [g1]}), [_det(1, box(30, 30, 0, 10, 0, 6))]) == pytest.approx(1.0)
    # two images: the second's ground truth is found only by a detection of that image
    gt2 = _gt_coco({1: [g1], 2: [g2]})
    assert M.mask_ap50(gt2, [_det(1, g1), _det(1, g2)]) == pytest.approx(51 / 101)
    assert M.mask_ap50(gt2, [_det(1, g1), _det(2, g2)]) == pytest.approx(1.0)
    assert M.mask_ap50(gt, []) == 0.0
    assert M.mask_ap50(_gt_coco({1: []}), [_det(1, g1)]) == 0.0   # no ground truth: COCOeval's -1 is 0
    other = _gt_coco({1: [g1]})
    other["annotations"][0]["category_id"] = 2                   # only category 1 is scored, as GLaMM does
    other["categories"].append({"id": 2, "name": "x"})
    assert M.mask_ap50(other, [_det(1, g1)]) == 0.0


# ------------------------------------------------------------------------------------------------ captions
def test_python_tokenize_like_ptb():
    assert M.python_tokenize("A man's dog doesn't bark, (really) -- \"no\"... ok?") == \
        "a man 's dog does n't bark -lrb- really -rrb- no ok"
    assert M.python_tokenize("They're here; we'll see: I'd go! It's {fine} - yes.") == \
        "they 're here we 'll see i 'd go it 's -lcb- fine -rcb- yes"
    assert M.python_tokenize("Can't stop `it' now [x] I'm, you've") == "ca n't stop it now -lsb- x -rsb- i 'm you 've"
    assert M.python_tokenize("A 3.5 m wide, 12-year-old tree!") == "a 3.5 m wide 12-year-old tree"


@pytest.mark.skipif(shutil.which("java") is None, reason="PTBTokenizer needs Java")
def test_python_tokenize_agrees_with_ptbtokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    caps = ["A man's dog doesn't bark, (really) -- \"no\"... ok?", "Two dogs; a red ball: grass!",
            "Can't stop `it' now [x] I'm, you've", "A 3.5 m wide, 12-year-old tree."]
    out = PTBTokenizer().tokenize({str(i): [{"caption": c}] for i, c in enumerate(caps)})
    assert [M.python_tokenize(c) for c in caps] == [out[str(i)][0] for i in range(len(caps))]


CAPS_GT = {"a": ["the cat sat on the mat"], "b": ["dogs run in the park"]}


@pytest.fixture
def no_java(monkeypatch):
    monkeypatch.setattr(M.shutil, "which", lambda name: None)


def test_caption_metrics_hand_worked(no_java, capsys):
    # BLEU-4 over the corpus: hypothesis "the cat sat on the hat" (6 words) matches 5/6 unigrams, 4/5 bigrams,
    # 3/4 trigrams, 2/3 4-grams; "dogs run in the park" matches all 5, 4, 3, 2; lengths equal: no penalty
    m = M.caption_metrics(CAPS_GT, {"a": "The cat sat on the hat.", "b": "Dogs run in the park"})
    assert m["Bleu_4"] == pytest.approx((10 / 11 * 8 / 9 * 6 / 7 * 4 / 5) ** 0.25, rel=1e-8)
    # ROUGE-L: LCS 5 of 6 words (P = R = 5/6, so F = 5/6) and 1
    assert m["ROUGE_L"] == pytest.approx((5 / 6 + 1) / 2, rel=1e-8)
    assert capsys.readouterr().out == ""  # the scorers print nothing
    # CIDEr-D: an exact caption scores 10 when its n-grams are rare in the corpus (here: no n-gram shared with
    # the other image's reference); a caption sharing no n-gram with its reference scores 0
    m = M.caption_metrics({"a": ["red apples on a table"], "b": ["dogs run in the park"]},
                          {"a": "red apples on a table", "b": "blue sky"})
    assert m["CIDEr"] == pytest.approx(5.0, rel=1e-8) and m["ROUGE_L"] == pytest.approx(0.5)
    # brevity penalty: 4 words for 8, every n-gram matching: exp(1 - 8 / 4)
    short = M.caption_metrics({"a": ["one two three four five six seven eight"], "b": ["x y z w"]},
                              {"a": "one two three four", "b": "x y z w"})
    assert short["Bleu_4"] == pytest.approx(math.exp(1 - 12 / 8), rel=1e-6)
    # a missing prediction is an empty caption
    missing = M.caption_metrics(CAPS_GT, {"b": "dogs run in the park"})
    assert missing == M.caption_metrics(CAPS_GT, {"a": "", "b": "dogs run in the park"})
    assert missing["ROUGE_L"] == pytest.approx(0.5)
    assert m["caption_tokenizer"] == "python (Java not found: PTBTokenizer needs it)"
    assert m["caption_skipped"] == {"METEOR": "needs Java (the METEOR 1.5 jar), and no `java` is on PATH",
                                    "SPICE": "needs Java, and no `java` is on PATH"}
    assert "METEOR" not in m and "SPICE" not in m
    with pytest.raises(ValueError, match="^caption metrics need at least one reference caption$"):
        M.caption_metrics({}, {})


def test_caption_metrics_several_references(no_java):
    # BLEU takes the closest reference length, CIDEr averages over the references
    m = M.caption_metrics({"a": ["a b c d", "a b c d e f g h"], "b": ["w x y z"]}, {"a": "a b c d", "b": "w x y z"})
    assert m["Bleu_4"] == pytest.approx(1.0, rel=1e-8)


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR and PTBTokenizer need Java")
def test_caption_metrics_with_java():
    m = M.caption_metrics({"a": ["A man rides a horse."], "b": ["Two dogs play in the snow."]},
                          {"a": "A man rides a horse.", "b": "Two dogs play in the snow."})
    assert m["caption_tokenizer"] == "PTBTokenizer" and m["METEOR"] == 1.0 and m["Bleu_4"] == pytest.approx(1.0)
    assert m["CIDEr"] == pytest.approx(10.0)
    import pycocoevalcap

    lib = f"{list(pycocoevalcap.__path__)[0]}/spice/lib"
    assert m["caption_skipped"] == {"SPICE": f"needs stanford-corenlp-3.6.0.jar, stanford-corenlp-3.6.0-models.jar in {lib} "
                                             "(pycocoevalcap would download them; nothing downloads at run time)"}
    # java=None: as without Java, whatever PATH holds
    assert M.caption_metrics({"a": ["x y"]}, {"a": "x y"}, java=None)["caption_tokenizer"].startswith("python")
    half = M.caption_metrics({"a": ["A man rides a horse."], "b": ["Two dogs play in the snow."]},
                             {"a": "A man rides a horse.", "b": "A cat sleeps."})
    assert half["METEOR"] == pytest.approx(0.49438202247191015, abs=1e-12)  # the METEOR 1.5 jar, run directly


@pytest.mark.skipif(shutil.which("java") is None, reason="SPICE needs Java")
def test_spice_runs_when_its_jars_are_there(monkeypatch):
    import pycocoevalcap.meteor.meteor as meteor
    import pycocoevalcap.spice.spice as spice

    calls = []

    class FakeMeteor:  # the real one is tested above; it takes seconds to start
        def compute_score(self, gts, res):
            return 0.5, [0.5]
    monkeypatch.setattr(meteor, "Meteor", FakeMeteor)

    class FakeSpice:  # SPICE itself needs Stanford CoreNLP's jars, which are never downloaded
        def compute_score(self, gts, res):
            calls.append((gts, res))
            return 0.25, [0.25]
    monkeypatch.setattr(spice, "Spice", FakeSpice)
    monkeypatch.setattr(M, "SPICE_JARS", ("guava-19.0.jar",))  # a jar that is in spice/lib
    m = M.caption_metrics({"a": ["A man."]}, {"a": "A man."})
    assert m["SPICE"] == 0.25 and m["METEOR"] == 0.5 and m["caption_skipped"] == {}
    assert calls == [({"a": ["a man"]}, {"a": ["a man"]})]
