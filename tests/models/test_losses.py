"""Loss values against hand-computed cases and the statistics of uncertainty point sampling."""
import math

import torch

from projects.desa2va.models.losses import (dice_loss, focal_loss, point_sample,
                                            point_sample_masks,
                                            sample_logits_and_targets, sigmoid_bce, uncertain_points)


def test_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    per_mask = [(math.log(2) + math.log(1 + math.e ** 2)) / 2, (math.log(1 + math.e ** -1) + math.log(2)) / 2]
    assert math.isclose(sigmoid_bce(logits, targets).item(), sum(per_mask) / 2, rel_tol=1e-5)


def test_dice_by_hand():
    logits = torch.tensor([[0.0, 0.0]])  # p = 0.5, 0.5
    targets = torch.tensor([[1.0, 0.0]])
    assert math.isclose(dice_loss(logits, targets).item(), 1 - (2 * 0.5 + 1) / (1.0 + 1.0 + 1), rel_tol=1e-6)
    perfect = dice_loss(torch.tensor([[50.0, -50.0, 50.0]]), torch.tensor([[1.0, 0.0, 1.0]]))
    assert perfect.item() < 1e-6
    assert math.isclose(dice_loss(torch.full((1, 4), -50.0), torch.zeros(1, 4)).item(), 0.0, abs_tol=1e-6)  # eps 1


def test_focal_by_hand():
    # p = 0.5 on a positive: CE ln 2, (1 - p_t)^2 = 0.25, alpha 0.25
    assert math.isclose(focal_loss(torch.tensor([[0.0]]), torch.tensor([[1.0]])).item(), 0.25 * 0.25 * math.log(2),
                        rel_tol=1e-6)
    # a negative with logit 1: p = s(1), p_t = 1 - p, weight (1 - alpha) = 0.75
    p = 1 / (1 + math.e ** -1)
    expected = 0.75 * (p ** 2) * math.log(1 + math.e)
    assert math.isclose(focal_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item(), expected, rel_tol=1e-6)


def test_stage1_iou_target_is_the_whole_mask_iou_by_hand():
    """METHOD.md 3.5: the IoU the stage-1 IoU head regresses to is that of the whole thresholded mask
    (low-res logits upsampled to the ground truth's size) with the ground truth, not of sampled points."""
    from types import SimpleNamespace

    from projects.desa2va.models.objectives import LossWeights, PointSampling, stage1_losses, whole_mask_iou

    logits = torch.full((3, 1, 4, 4), -8.0)
    logits[0, 0, :2, :2] = 8.0  # the top-left quarter
    logits[1, 0, :, :2] = 8.0   # the left half
    gt = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    gt[0, 0, :4, :8] = True     # the top half: IoU with the quarter = 16 / 32
    gt[1, 0, :, :4] = True      # the left half: IoU 1
    # object 2: both empty -> 1
    iou = whole_mask_iou(logits, [gt[:2], gt[2:]])
    assert torch.allclose(iou, torch.tensor([0.5, 1.0, 1.0]))
    w = LossWeights(lm=0, bce=0, dice=0, align=0, orth=0, focal=0, pretrain_dice=0, iou=1.0)
    pred = torch.tensor([[0.25], [0.75], [1.0]])
    losses = stage1_losses(SimpleNamespace(low_res_logits=logits, iou_pred=pred), [gt[:2], gt[2:]], w,
                           PointSampling(16, 3.0, 0.75))
    assert math.isclose(losses["loss_text_iou"].item(), ((0.25 - 0.5) ** 2 + 0.25 ** 2 + 0) / 3, rel_tol=1e-6)


def test_point_sample_is_bilinear_in_normalised_coordinates():
    ramp = torch.arange(8, dtype=torch.float32).repeat(8, 1)[None, None]  # value = x pixel index
    pts = torch.tensor([[[0.5, 0.5], [1 / 16, 0.3], [0.25, 0.9]]])
    vals = point_sample(ramp, pts)[0, 0]
    assert torch.allclose(vals, torch.tensor([3.5, 0.0, 1.5]), atol=1e-5)


def test_uncertain_points_statistics():
    torch.manual_seed(0)
    logits = torch.full((4, 1, 64, 64), 10.0)
    logits[:, :, :, :26] = 0.0  # the left 40% is maximally uncertain
    pts = uncertain_points(logits, num_points=2000, oversample_ratio=3, importance_ratio=0.75)
    assert pts.shape == (4, 2000, 2) and (pts >= 0).all() and (pts <= 1).all()
    in_band = pts[..., 0] < 26 / 64
    assert in_band[:, :1500].all()  # the 75% importance points are all among the most uncertain
    uniform_share = in_band[:, 1500:].float().mean().item()
    assert 0.33 < uniform_share < 0.48  # the last 25% are uniform: ~40% of them land in the band
    assert in_band.float().mean() > 0.8


def test_same_points_for_prediction_and_ground_truth():
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 16, 16)
    gt = torch.zeros(2, 1, 100, 100)
    gt[:, :, :50] = 1  # top half, at another resolution
    torch.manual_seed(2)
    lg, tg = sample_logits_and_targets(logits, gt, num_points=500)
    assert lg.shape == tg.shape == (2, 500)
    torch.manual_seed(2)
    pts = uncertain_points(logits, 500)
    assert torch.allclose(lg, point_sample(logits, pts)[:, 0])
    expected = (pts[..., 1] < 0.5).float()
    inside = (pts[..., 1] - 0.5).abs() > 0.02  # away from the bilinear boundary
    assert torch.allclose(tg[inside], expected[inside], atol=1e-5)  # also at the left/right borders (no zero padding)
    edge = point_sample(torch.ones(1, 1, 4, 4), torch.tensor([[[0.0, 0.0], [1.0, 0.5], [0.999, 0.999]]]))
    assert torch.equal(edge, torch.ones(1, 1, 3))


def test_gathered_mask_sampling_equals_grid_sample():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 2, 37, 53, generator=g) > 0.5
    pts = torch.rand(3, 400, 2, generator=g)
    pts[:, :8] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.999, 0.0], [0.0, 0.999], [0.5, 1.0], [1.0, 0.5],
                               [0.001, 0.5], [0.5, 0.001]])  # border points (border padding)
    fast = point_sample_masks(masks, pts)
    assert fast.dtype == torch.float32 and fast.shape == (3, 2, 400)
    assert torch.allclose(fast, point_sample(masks.float(), pts), atol=1e-5)
    soft = torch.rand(3, 1, 20, 20, generator=g)  # float masks too
    assert torch.allclose(point_sample_masks(soft, pts), point_sample(soft, pts), atol=1e-5)


def test_ground_truth_at_the_logits_size_as_sa2va():
    """gt_resolution='logits': the ground truth is nearest-resized to the logits' size before both are
    point-sampled (Sa2VA's F.interpolate(gt, size=pred.shape[-2:], mode='nearest')). Expected: the same
    points sampled from a mask resized by hand (every 4th pixel of a 4x larger mask)."""
    from projects.desa2va.models.objectives import PointSampling

    torch.manual_seed(0)
    gt = torch.rand(2, 1, 32, 32) > 0.5
    logits = torch.randn(2, 1, 8, 8)
    by_hand = gt[:, :, ::4, ::4].float()  # torch nearest from 32 to 8 takes pixel floor(4 i)
    torch.manual_seed(1)
    lg, tg = PointSampling(64, 3.0, 0.75, "logits")(logits, [gt])
    torch.manual_seed(1)
    lg2, tg2 = PointSampling(64, 3.0, 0.75, "full")(logits, [by_hand])
    assert torch.equal(lg, lg2) and torch.allclose(tg, tg2)
    torch.manual_seed(1)
    _, full = PointSampling(64, 3.0, 0.75, "full")(logits, [gt])
    assert not torch.allclose(full, tg)
