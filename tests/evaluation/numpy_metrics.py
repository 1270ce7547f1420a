"""The metrics recomputed for the tests in plain numpy, from the definitions (davis2017-evaluation, ReVOS,
refer), without the project's metrics.py or OpenCV: what the evaluation scripts report is checked
against these."""
import numpy as np


def j(p, g):
    u = (p | g).sum()
    return 1.0 if u == 0 else (p & g).sum() / u


def bmap(s):
    """seg2bmap: a pixel differs from its east, south or south-east neighbour (edges: east / south only)."""
    e, so, se = np.zeros_like(s), np.zeros_like(s), np.zeros_like(s)
    e[:, :-1], so[:-1], se[:-1, :-1] = s[:, 1:], s[1:], s[1:, 1:]
    b = (s ^ e) | (s ^ so) | (s ^ se)
    b[-1, :], b[:, -1] = s[-1, :] ^ e[-1, :], s[:, -1] ^ so[:, -1]
    b[-1, -1] = False
    return b


def dilate(b, r):
    """OR of the mask shifted by every offset of the disk x^2 + y^2 <= r^2."""
    h, w = b.shape
    padded = np.pad(b, r)
    out = np.zeros_like(b)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx <= r * r:
                out |= padded[r + dy:r + dy + h, r + dx:r + dx + w]
    return out


def f(p, g, r=None):
    """Boundary F with a match radius of `r` pixels (default: ceil(0.008 * the frame's diagonal))."""
    bp, bg = bmap(p), bmap(g)
    if not bp.any() or not bg.any():
        return float(not bp.any() and not bg.any())  # one side empty: P or R is 0, so F = 0
    r = int(np.ceil(0.008 * np.hypot(*p.shape))) if r is None else r
    prec = (bp & dilate(bg, r)).sum() / bp.sum()
    rec = (bg & dilate(bp, r)).sum() / bg.sum()
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def video_jf(pred, gt):
    """(J, F) of one expression: (T, H, W) bool each."""
    return np.mean([j(p, g) for p, g in zip(pred, gt)]), np.mean([f(p, g) for p, g in zip(pred, gt)])


def accuracy(pred, gt):
    return np.mean([(p == g).mean() for p, g in zip(pred, gt)])


def robustness(pred, gt, foreground):
    return np.mean([max(0.0, 1 - (p & ~g).sum() / (fg.sum() + 1e-6)) for p, g, fg in zip(pred, gt, foreground)])
