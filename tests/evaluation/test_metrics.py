"""Metrics on hand-made cases, with the davis2017-evaluation / refer conventions."""
import math

import numpy as np
import pytest

from projects.desa2va.evaluation.metrics import (boundary_f_measure, ciou_giou, disk, j_and_f, pixel_accuracy,
                                                 region_similarity, robustness, seg2bmap)


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_region_similarity_cases():
    empty, obj = np.zeros((10, 12), bool), box(10, 12, 2, 6, 3, 9)
    assert region_similarity(empty, empty) == 1.0            # both empty
    assert region_similarity(empty, obj) == 0.0              # empty prediction
    assert region_similarity(obj, empty) == 0.0              # empty ground truth
    assert region_similarity(obj, obj) == 1.0
    half = box(10, 12, 2, 6, 3, 6)
    assert math.isclose(region_similarity(half, obj), 12 / 24)
    px = box(10, 12, 4, 5, 7, 8)                             # one-pixel object
    assert region_similarity(px, px) == 1.0 and region_similarity(box(10, 12, 4, 5, 8, 9), px) == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        region_similarity(obj, obj.T)


def test_seg2bmap_by_hand():
    seg = box(4, 4, 1, 3, 1, 3)  # a 2x2 square
    expected = np.array([[1, 1, 1, 0],
                         [1, 0, 1, 0],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]], bool)
    assert np.array_equal(seg2bmap(seg), expected)
    px = box(5, 5, 2, 3, 2, 3)  # one pixel: itself and its north, west and north-west neighbours
    assert set(zip(*np.nonzero(seg2bmap(px)))) == {(1, 1), (1, 2), (2, 1), (2, 2)}


def test_disk_matches_its_definition():
    d = disk(2)
    assert d.shape == (5, 5) and d.sum() == 13 and d[0, 2] and not d[0, 1]


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
    # a 5-px shift does not: only the vertical sides (shared columns) match
    f = boundary_f_measure(box(40, 60, 15, 30, 10, 40), obj)
    assert 0.0 < f < 0.7


def test_tolerance_grows_with_the_frame_diagonal():
    # 480 x 854 (DAVIS): ceil(0.008 * 979.7) = 8 px; a 7-px shift of a large box still matches perfectly
    gt = box(480, 854, 100, 300, 100, 500)
    assert boundary_f_measure(box(480, 854, 107, 307, 100, 500), gt) == 1.0
    assert boundary_f_measure(box(480, 854, 112, 312, 100, 500), gt) < 1.0


def test_border_touching_and_non_square_frames():
    full = np.ones((30, 50), bool)
    assert region_similarity(full, full) == 1.0 and boundary_f_measure(full, full) == 1.0
    left = box(30, 50, 0, 30, 0, 10)  # touches three borders
    assert boundary_f_measure(left, left) == 1.0
    assert boundary_f_measure(box(30, 50, 0, 30, 0, 11), left) == 1.0   # within 1 px
    j, f = j_and_f([left, left], [left, box(30, 50, 0, 30, 0, 20)])
    assert math.isclose(j, (1 + 0.5) / 2) and 0 < f < 1


def test_j_and_f_checks_lengths():
    with pytest.raises(ValueError, match="2 predicted frames for 1"):
        j_and_f([np.zeros((2, 2), bool)] * 2, [np.zeros((2, 2), bool)])


def test_ciou_counts_misses_and_giou():
    g1, g2 = box(10, 10, 0, 5, 0, 4), box(10, 10, 0, 2, 0, 2)   # |G1| = 20, |G2| = 4
    p2 = box(10, 10, 0, 2, 0, 1)                                # I = 2, U = 4
    r = ciou_giou([None, p2], [g1, g2])
    assert math.isclose(r["ciou"], 2 / (20 + 4))                # the miss adds |G1| to the union
    assert math.isclose(r["giou"], (0 + 0.5) / 2)
    skipped = ciou_giou([p2], [g2])["ciou"]                     # what skipping the miss would report
    assert skipped > r["ciou"]
    both_empty = ciou_giou([np.zeros((3, 3), bool)], [np.zeros((3, 3), bool)])
    assert both_empty == {"ciou": 1.0, "giou": 1.0}


def test_revos_accuracy_and_robustness():
    g = [box(4, 5, 0, 2, 0, 2), np.zeros((4, 5), bool)]
    p = [box(4, 5, 0, 2, 0, 3), box(4, 5, 3, 4, 0, 5)]         # 2 and 5 false-positive pixels
    assert math.isclose(pixel_accuracy(p, g), ((20 - 2) / 20 + (20 - 5) / 20) / 2)
    fg = box(4, 5, 0, 2, 0, 5)                                  # the video's annotated foreground: 10 px
    assert math.isclose(robustness(p, g, fg), ((1 - 2 / 10) + (1 - 5 / 10)) / 2)
    assert robustness([np.ones((4, 5), bool)], [np.zeros((4, 5), bool)], fg) == 0.0  # clipped at 0
    none = np.zeros((4, 5), bool)
    assert robustness([none], [none], none) == 1.0 and robustness([fg], [none], none) == 0.0


def test_gcg_greedy_matching_miou_and_recall():
    from projects.desa2va.evaluation.metrics import gcg_miou, gcg_recall, greedy_matches, word_f1

    ious = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert greedy_matches(ious) == [(0, 0, 0.9), (1, 1, 0.1)]  # greedy, one-to-one (not the optimal sum)
    g1, g2 = box(20, 20, 0, 10, 0, 10), box(20, 20, 10, 20, 10, 20)
    p1 = box(20, 20, 0, 10, 0, 5)                              # IoU 0.5 with g1
    im = {"pred": [p1], "gt": [g1, g2], "pred_phrases": ["a dog"], "gt_phrases": ["the dog", "a ball"]}
    assert math.isclose(gcg_miou([im]), 0.5)                   # matched pairs only
    assert math.isclose(gcg_miou([im, {"pred": [], "gt": [g1]}]), 0.25)  # an image without a match: 0
    assert math.isclose(word_f1("a dog", "the dog"), 0.5)
    assert math.isclose(gcg_recall([im]), 1 / 2)               # IoU 0.5 and phrase F1 0.5: 1 of 2 GT
    im["pred_phrases"] = ["a cat"]
    assert gcg_recall([im]) == 0.0


def test_mask_ap50():
    from projects.desa2va.evaluation.metrics import mask_ap50

    g1, g2 = box(30, 30, 0, 10, 0, 10), box(30, 30, 15, 30, 15, 30)
    assert math.isclose(mask_ap50([{"pred": [g1, g2], "gt": [g1, g2]}]), 1.0, abs_tol=1e-6)
    half = mask_ap50([{"pred": [g1], "gt": [g1, g2]}])           # recall 0.5 at precision 1
    assert 0.45 < half < 0.55
    assert mask_ap50([{"pred": [box(30, 30, 0, 10, 20, 30)], "gt": [g1]}]) == 0.0
