"""Image preprocessing for both backbones (one implementation, used by datasets and inference).

- InternVL2.5: dynamic tiling. An image is resized to the grid of `tile_size` tiles (cols x rows,
  min_tiles <= cols*rows <= max_tiles) whose aspect ratio is closest to the image's, split into tiles,
  and, when there is more than one tile, followed by a `tile_size` thumbnail of the whole image.
  Every tile is normalised with ImageNet mean/std -> (n_tiles, 3, tile_size, tile_size).
  A video frame is always one tile (no thumbnail).
- SAM-2: the image is resized (not padded) to `size` x `size` (1024 for real SAM-2) and normalised
  with the same ImageNet mean/std -> (3, size, size).
"""
from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = Union[Image.Image, np.ndarray]


def to_pil(image: ImageLike) -> Image.Image:
    """PIL RGB image from a PIL image or an (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got shape {arr.shape} dtype {arr.dtype}")
    return Image.fromarray(arr, "RGB")


def candidate_grids(min_tiles: int, max_tiles: int) -> List[Tuple[int, int]]:
    """All (cols, rows) with min_tiles <= cols*rows <= max_tiles, fewest tiles first."""
    grids = {(c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1)
             if min_tiles <= c * r <= max_tiles}
    return sorted(grids, key=lambda g: (g[0] * g[1], g))


def choose_grid(width: int, height: int, min_tiles: int, max_tiles: int, tile_size: int) -> Tuple[int, int]:
    """Grid (cols, rows) whose aspect ratio is closest to width/height.

    Ties between grids of the same ratio go to the larger grid only when the image has more than half
    the pixels that grid would hold (InternVL's rule), so small images are not blown up.
    """
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile_size * tile_size * cols * rows:
            best = (cols, rows)
    return best


def dynamic_tiles(image: ImageLike, min_tiles: int = 1, max_tiles: int = 12, tile_size: int = 448,
                  use_thumbnail: bool = True) -> List[Image.Image]:
    """Split an image into InternVL2.5 tiles (+ thumbnail when there is more than one tile)."""
    image = to_pil(image)
    cols, rows = choose_grid(image.width, image.height, min_tiles, max_tiles, tile_size)
    resized = image.resize((cols * tile_size, rows * tile_size), Image.BICUBIC)
    tiles = [resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
             for r in range(rows) for c in range(cols)]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((tile_size, tile_size), Image.BICUBIC))
    return tiles


def normalize(images: Sequence[ImageLike], size: int) -> torch.Tensor:
    """Resize each image to size x size (bicubic) and normalise -> (N, 3, size, size) float32."""
    out = torch.empty(len(images), 3, size, size)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for i, img in enumerate(images):
        img = to_pil(img)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        out[i] = (t - mean) / std
    return out


def mllm_image_tiles(image: ImageLike, tile_size: int = 448, min_tiles: int = 1, max_tiles: int = 12,
                     use_thumbnail: bool = True) -> torch.Tensor:
    """MLLM input of one image: (n_tiles, 3, tile_size, tile_size)."""
    return normalize(dynamic_tiles(image, min_tiles, max_tiles, tile_size, use_thumbnail), tile_size)


def mllm_video_frames(frames: Iterable[ImageLike], tile_size: int = 448) -> torch.Tensor:
    """MLLM input of video frames: one tile per frame, (T, 3, tile_size, tile_size)."""
    return normalize(list(frames), tile_size)


def mllm_inputs(geometry, images: Sequence[ImageLike], kind: str, regions: bool = False
                ) -> Tuple[torch.Tensor, List[int]]:
    """The MLLM's pixel values and the visual tokens of each `<image>`, for training and inference alike.

    geometry: an `ImageGeometry` (tile size, tokens per tile, tiling limits). kind 'image': dynamic tiles of
    images[0], one `<image>`; with `regions` (visual prompts) one whole-image tile, whose token grid the
    region masks index; kind 'video': one tile per frame, one `<image>` per frame.
    """
    g = geometry
    if kind == "video":
        return mllm_video_frames(images, g.tile_size), [g.num_image_token] * len(images)
    if kind != "image":
        raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
    if regions:
        tiles = mllm_image_tiles(images[0], g.tile_size, 1, 1, False)
    else:
        tiles = mllm_image_tiles(images[0], g.tile_size, g.min_tiles, g.max_tiles, g.use_thumbnail)
    return tiles, [tiles.shape[0] * g.num_image_token]


def sam2_frames(frames: Iterable[ImageLike], size: int = 1024) -> torch.Tensor:
    """SAM-2 input: (T, 3, size, size), resized without padding, ImageNet-normalised."""
    return normalize(list(frames), size)


def resize_logits(logits: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (..., h, w) mask logits to `size` (H, W): done once, to the original size. Logits
    already of that size are returned as they are (the resize would be the identity)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits.float()
    lead = logits.shape[:-2]
    flat = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


POSTPROCESS = ("direct", "sa2va")


def logits_to_masks(logits: torch.Tensor, size: Tuple[int, int], chain: str = "direct", sam_size: int = 1024
                    ) -> torch.Tensor:
    """Bool masks (..., H, W) from mask logits (..., h, w). chain 'direct' (METHOD.md 3.3): one bilinear
    resize to `size`, logits > 0; 'sa2va' (Sa2VA's predict_forward): bilinear to SAM-2's `sam_size` first
    (nothing to do when the logits are already that size), then to `size`, sigmoid > 0.5."""
    if chain == "direct":
        return resize_logits(logits, size) > 0
    if chain != "sa2va":
        raise ValueError(f"postprocess must be one of {POSTPROCESS}, got {chain!r}")
    return resize_logits(resize_logits(logits, (sam_size, sam_size)), size).sigmoid() > 0.5


def region_token_cells(mask: np.ndarray, grid: int) -> np.ndarray:
    """The cells of the `grid` x `grid` visual-token map that a region prompt covers: every cell holding
    at least one pixel of the (H, W) bool mask. Datasets use it to count a region's `<IMG_CONTEXT>`
    tokens and the model to pick their visual features, so both agree by construction."""
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    cover = F.adaptive_max_pool2d(m, (grid, grid))[0, 0] > 0
    return cover.numpy()
