"""Dynamic tiling, thumbnail rule, normalisation and SAM-2 preprocessing."""
import numpy as np
import pytest
import torch
from PIL import Image

from projects.desa2va.common.image_processing import (IMAGENET_MEAN, IMAGENET_STD, candidate_grids, choose_grid,
                                                      dynamic_tiles, mllm_image_tiles, mllm_video_frames,
                                                      resize_logits, sam2_frames)


@pytest.mark.parametrize("size,grid", [
    ((448, 448), (1, 1)),      # square, small: no blow-up to 2x2
    ((896, 448), (2, 1)),      # 2:1 landscape
    ((448, 1344), (1, 3)),     # 1:3 portrait
    ((2000, 500), (4, 1)),     # 4:1
    ((1000, 1000), (3, 3)),    # square but large: tie -> the largest grid the image fills > 50%
    ((700, 700), (2, 2)),      # 490k px > 0.5 * 4 tiles (401k) but < 0.5 * 9 tiles (903k)
    ((5000, 100), (12, 1)),    # extreme ratio capped at max_tiles
])
def test_grid_choice_by_aspect_ratio(size, grid):
    assert choose_grid(*size, min_tiles=1, max_tiles=12, tile_size=448) == grid


def test_candidate_grids_respect_bounds():
    grids = candidate_grids(1, 12)
    assert all(1 <= c * r <= 12 for c, r in grids)
    assert (4, 3) in grids and (3, 4) in grids and (4, 4) not in grids and (13, 1) not in grids
    assert candidate_grids(4, 6)[0][0] * candidate_grids(4, 6)[0][1] == 4


def test_thumbnail_only_with_more_than_one_tile():
    one = dynamic_tiles(Image.new("RGB", (448, 448)), max_tiles=12, tile_size=448)
    assert len(one) == 1
    many = dynamic_tiles(Image.new("RGB", (896, 448)), max_tiles=12, tile_size=448)
    assert len(many) == 3 and all(t.size == (448, 448) for t in many)
    no_thumb = dynamic_tiles(Image.new("RGB", (896, 448)), tile_size=448, use_thumbnail=False)
    assert len(no_thumb) == 2


def test_tiles_are_crops_in_row_major_order():
    arr = np.zeros((64, 128, 3), np.uint8)
    arr[:, 64:] = 255  # right half white
    tiles = dynamic_tiles(arr, max_tiles=4, tile_size=64, use_thumbnail=True)
    assert len(tiles) == 3
    assert np.asarray(tiles[0]).mean() < 5 and np.asarray(tiles[1]).mean() > 250  # left, right, thumbnail
    assert 100 < np.asarray(tiles[2]).mean() < 155


def test_normalisation_and_shapes():
    white = np.full((30, 50, 3), 255, np.uint8)
    x = mllm_image_tiles(white, tile_size=32, max_tiles=1)
    assert x.shape == (1, 3, 32, 32)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[0, :, 5, 5], expected, atol=1e-5)
    v = mllm_video_frames([white] * 5, tile_size=32)
    assert v.shape == (5, 3, 32, 32)  # one tile per frame, no thumbnail
    s = sam2_frames([white, white], size=64)
    assert s.shape == (2, 3, 64, 64) and torch.allclose(s[1, :, 0, 0], expected, atol=1e-5)


def test_bad_image_array_is_rejected():
    with pytest.raises(ValueError, match="uint8 RGB"):
        mllm_image_tiles(np.zeros((10, 10), np.float32))


def test_resize_logits_to_original_size():
    logits = torch.full((2, 1, 8, 8), -5.0)
    logits[:, :, :4] = 5.0
    out = resize_logits(logits, (30, 17))
    assert out.shape == (2, 1, 30, 17)
    assert (out[:, :, :13] > 0).all() and (out[:, :, 17:] < 0).all()
