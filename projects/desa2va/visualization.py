"""Mask visualisation: coloured overlays with a contour per object, captions, prediction / ground truth side
by side, frame strips, and videos written as mp4 (OpenCV mp4v) or GIF. Used by the evaluation scripts
(`--vis N`), the quickstart, the demo notebook and the Gradio app.

Images are (H, W, 3) uint8 RGB arrays (PIL images are accepted as input); masks are (H, W) bool arrays,
one per object, object k drawn in `color(k)`.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

# 20 colours chosen to stay distinct from each other (Sasha Trubetskoy's list), RGB.
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
    (128, 128, 128), (255, 225, 25))


def color(k: int) -> Tuple[int, int, int]:
    return PALETTE[k % len(PALETTE)]


def hex_color(k: int) -> str:
    return "#%02x%02x%02x" % color(k)


def as_rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB")).copy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {arr.shape} dtype {arr.dtype}")
    return arr.copy()


def overlay(image, masks: Sequence[np.ndarray], colors: Optional[Sequence[Tuple[int, int, int]]] = None,
            alpha: float = 0.5, contour: int = 2) -> np.ndarray:
    """The image with each mask blended in its colour and outlined by a contour of `contour` pixels."""
    out = as_rgb(image).astype(np.float32)
    h, w = out.shape[:2]
    cols = list(colors) if colors is not None else [color(k) for k in range(len(masks))]
    for k, m in enumerate(masks):
        m = np.asarray(m, bool)
        if m.shape != (h, w):
            raise ValueError(f"mask {k} is {m.shape[1]}x{m.shape[0]}, the image is {w}x{h}")
        out[m] = (1 - alpha) * out[m] + alpha * np.array(cols[k], np.float32)
    out = out.round().clip(0, 255).astype(np.uint8)
    if contour > 0:
        for k, m in enumerate(masks):
            found, _ = cv2.findContours(np.asarray(m, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, found, -1, tuple(int(c) for c in cols[k]), contour)
    return out


def caption(image, text: str, band: int = 22) -> np.ndarray:
    """The image under a black band holding `text` (ASCII; other characters are replaced by '?')."""
    img = as_rgb(image)
    scale = band / 40.0
    canvas = np.zeros((img.shape[0] + band, img.shape[1], 3), np.uint8)
    canvas[band:] = img
    safe = text.encode("ascii", "replace").decode()
    cv2.putText(canvas, safe, (3, band - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def hstack(images: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images side by side, top-aligned, on black."""
    imgs = [as_rgb(i) for i in images]
    h = max(i.shape[0] for i in imgs)
    canvas = np.zeros((h, sum(i.shape[1] for i in imgs) + gap * (len(imgs) - 1), 3), np.uint8)
    x = 0
    for i in imgs:
        canvas[:i.shape[0], x:x + i.shape[1]] = i
        x += i.shape[1] + gap
    return canvas


def side_by_side(image, pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray],
                 titles: Tuple[str, str] = ("prediction", "ground truth")) -> np.ndarray:
    """Prediction (left) and ground truth (right) overlays of one image, object k in colour k on both."""
    return hstack([caption(overlay(image, pred_masks), titles[0]), caption(overlay(image, gt_masks), titles[1])])


def video_overlays(frames: Iterable, masks: Sequence[np.ndarray]) -> List[np.ndarray]:
    """One overlay per frame; masks: one (T, H, W) bool array per object."""
    return [overlay(f, [m[t] for m in masks]) for t, f in enumerate(frames)]


def frame_strip(frames: Sequence[np.ndarray], max_frames: int = 8, width: Optional[int] = None) -> np.ndarray:
    """Up to `max_frames` frames spread evenly over the video, side by side (each `width` px wide)."""
    if not len(frames):
        raise ValueError("no frames to show")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    tiles = []
    for t in picks:
        f = as_rgb(frames[t])
        if width:
            f = cv2.resize(f, (width, max(1, round(f.shape[0] * width / f.shape[1]))), interpolation=cv2.INTER_AREA)
        tiles.append(caption(f, f"frame {t}", band=16))
    return hstack(tiles)


def write_video(frames: Sequence[np.ndarray], path: str, fps: float = 10.0) -> str:
    """Write RGB frames as `.mp4` (OpenCV mp4v; sizes padded to even) or `.gif` (PIL). Returns `path`."""
    if not len(frames):
        raise ValueError(f"no frames to write to {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gif":
        pil = [Image.fromarray(as_rgb(f)) for f in frames]
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(round(1000 / fps)), loop=0)
        return path
    if ext != ".mp4":
        raise ValueError(f"video output must be .mp4 or .gif, got {path}")
    h, w = as_rgb(frames[0]).shape[:2]
    hh, ww = h + h % 2, w + w % 2
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (ww, hh))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for f in frames:
            f = as_rgb(f)
            if f.shape[:2] != (h, w):
                raise ValueError(f"frame sizes differ in {path}: {f.shape[1]}x{f.shape[0]} vs {w}x{h}")
            canvas = np.zeros((hh, ww, 3), np.uint8)
            canvas[:h, :w] = f
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def save_image(image: np.ndarray, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(as_rgb(image)).save(path)
    return path


def grounded_phrases(answer: str) -> List[Optional[str]]:
    """The phrase of each [SEG] of a grounded answer, in order: "<p>a dog</p> [SEG]" -> "a dog"; a [SEG]
    without a phrase before it -> None."""
    import re

    out = []
    for m in re.finditer(r"(?:<p>(.*?)</p>\s*)?\[SEG\]", answer, flags=re.S):
        out.append(m.group(1).strip() if m.group(1) else None)
    return out


def grounded_html(answer: str) -> str:
    """The answer as HTML, each grounded phrase (or a bare [SEG]) in the colour of its mask in `overlay`."""
    import html
    import re

    k = 0

    def paint(m):
        nonlocal k
        label = html.escape(m.group(1).strip()) if m.group(1) else f"[object {k + 1}]"
        span = f'<span style="background:{hex_color(k)};color:black;padding:0 3px;border-radius:3px">{label}</span>'
        k += 1
        return span

    parts = re.split(r"((?:<p>.*?</p>\s*)?\[SEG\])", answer, flags=re.S)
    out = []
    for part in parts:
        m = re.fullmatch(r"(?:<p>(.*?)</p>\s*)?\[SEG\]", part, flags=re.S)
        out.append(paint(m) if m else html.escape(part.replace("<p>", "").replace("</p>", "")))
    return "<p>" + "".join(out) + "</p>"
