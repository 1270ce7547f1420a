"""SAM-2 trained with its own prompts and through its memory (models/grounding/sam_training.py)."""
import numpy as np
import pytest
import torch

from projects.desa2va.models.grounding import SAM2Grounding
from projects.desa2va.models.grounding import sam_training as T


def _np_focal(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + np.exp(-x))
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    return ((alpha * t + (1 - alpha) * (1 - t)) * ce * (1 - p_t) ** gamma).mean()


def _np_dice(x, t):
    p = 1 / (1 + np.exp(-x))
    return 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def test_prompt_losses_supervise_the_lowest_loss_mask_and_every_iou():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (2, 3, 4, 4)).astype(np.float32)
    gt = np.zeros((2, 4, 4), bool)
    gt[0, :2, :2] = True
    gt[1, 1:, 1:] = True
    logits[0, 2] = np.where(gt[0], 6.0, -6.0)  # object 0: mask 2 is nearly right, so it must be the one chosen
    iou = rng.uniform(0, 1, (2, 3)).astype(np.float32)
    obj = np.array([[0.3], [-1.0]], np.float32)
    out = T.prompt_losses(torch.from_numpy(logits), torch.from_numpy(iou), torch.from_numpy(obj), torch.from_numpy(gt))
    focal = np.array([[_np_focal(logits[n, k].ravel(), gt[n].ravel().astype(float)) for k in range(3)] for n in range(2)])
    dice = np.array([[_np_dice(logits[n, k].ravel(), gt[n].ravel().astype(float)) for k in range(3)] for n in range(2)])
    best = (20 * focal + dice).argmin(1)
    assert best[0] == 2 and out["best"].tolist() == best.tolist()
    rows = np.arange(2)
    np.testing.assert_allclose(float(out["loss_focal"]), 20 * focal[rows, best].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(out["loss_dice"]), dice[rows, best].mean(), rtol=1e-5)
    pred = logits > 0
    real = np.array([[(pred[n, k] & gt[n]).sum() / (pred[n, k] | gt[n]).sum() for k in range(3)] for n in range(2)])
    np.testing.assert_allclose(out["real_iou"].numpy(), real, rtol=1e-6)
    np.testing.assert_allclose(float(out["loss_iou"]), ((iou - real) ** 2).mean(), rtol=1e-5)
    bce = np.mean([np.log1p(np.exp(-v)) for v in obj.ravel()])
    np.testing.assert_allclose(float(out["loss_obj"]), bce, rtol=1e-5)


def test_prompt_samplers():
    rng = np.random.default_rng(0)
    gt = np.zeros((10, 12), bool)
    gt[2:6, 3:9] = True  # rows 2-5, columns 3-8
    np.testing.assert_array_equal(T.jittered_box(gt, rng, 0.0), [[3, 2], [8, 5]])
    for _ in range(20):
        x, y = T.uniform_point(gt, rng).astype(int)
        assert gt[y, x]
    pred = gt.copy()
    pred[2:6, 3:5] = False            # missed 8 pixels ...
    pred[8, 0:3] = True               # ... false 3: the click is positive, in the missed part
    (x, y), label = T.correction_point(pred, gt, rng)
    assert label == 1 and gt[int(y), int(x)] and not pred[int(y), int(x)]
    pred = gt.copy()
    pred[7:10, :] = True              # 36 false pixels: negative click there
    (x, y), label = T.correction_point(pred, gt, rng)
    assert label == 0 and pred[int(y), int(x)] and not gt[int(y), int(x)]
    x, y = T.peak_point(gt)  # on the distance-transform ridge of the 4 x 6 box: rows 3-4, columns 4-7
    assert y in (3, 4) and 4 <= x <= 7
    assert T.peak_point(np.zeros_like(gt)) is None


@pytest.fixture
def random_sam2():
    torch.manual_seed(0)
    return SAM2Grounding("sam2_tiny.yaml", None).sam2_model


def _clips(n_clips, n_frames, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_clips * n_frames, 3, size, size, generator=g)


def test_track_clip_trains_memory_and_reads_the_conditioning_mask(random_sam2):
    m = random_sam2
    m.train()
    s = m.image_size
    backbone = m.forward_image(_clips(2, 3, s))
    cond = torch.zeros(2, 1, 1, s, s)
    cond[:, 0, 0, 20:60, 30:70] = 1.0
    outs = T.track_clip(m, backbone, 2, 3, cond_masks=cond)
    assert [o["frame"] for o in outs] == [0, 1, 2]
    assert [o["conditioning"] for o in outs] == [True, False, False]
    assert outs[1]["low_res_multimasks"].shape[:2] == (2, 3)  # multimask output while tracking
    loss = sum(o["low_res_multimasks"].square().mean() for o in outs[1:])
    loss.backward()
    for part in ("memory_attention", "memory_encoder", "sam_mask_decoder"):
        grads = [p.grad for p in getattr(m, part).parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, part
    with torch.no_grad():  # tracked frames depend on the mask that seeded the memory
        other = torch.zeros_like(cond)
        other[:, 0, 0, 80:120, 0:40] = 1.0
        a = T.track_clip(m, backbone, 2, 3, cond_masks=cond)[1]["low_res_multimasks"]
        b = T.track_clip(m, backbone, 2, 3, cond_masks=other)[1]["low_res_multimasks"]
    assert float((a - b).abs().max()) > 1e-3


def test_track_clip_from_points_decodes_the_first_frame(random_sam2):
    m = random_sam2
    m.eval()
    s = m.image_size
    with torch.no_grad():
        backbone = m.forward_image(_clips(1, 2, s))
        pts = {"point_coords": torch.tensor([[[40.0, 50.0]]]), "point_labels": torch.ones(1, 1, dtype=torch.int32)}
        outs = T.track_clip(m, backbone, 1, 2, cond_points=pts)
    assert outs[0]["conditioning"] is False  # decoded from the point, so it is supervised
    assert outs[0]["low_res_multimasks"].shape[1] == 3
    with pytest.raises(ValueError, match="cond_points"):
        T.track_clip(m, backbone, 1, 2, cond_points=pts, cond_frames=(0, 1))
