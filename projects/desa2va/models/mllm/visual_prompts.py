"""Visual prompts: the LLM tokens of image regions (Osprey-style `<vp>` regions, Sa2VA's layout)."""
from __future__ import annotations

import torch

from ...common.image_processing import region_token_cells


class ImageTokenMismatchError(ValueError):
    """The number of `<IMG_CONTEXT>` tokens does not match the visual tokens provided."""


def region_tokens(vis: torch.Tensor, in_region: torch.Tensor, num_tiles, region_masks, num_image_token: int
                  ) -> torch.Tensor:
    """Visual tokens of the regions (`<IMG_CONTEXT>` inside `<vp> ... </vp>`): region k of sample b
    (region_masks[b][k], (H, W) bool) takes the tokens of the cells it covers on its single tile's grid
    (`region_token_cells`), row-major, regions in order; counts are checked, never patched."""
    grid = int(round(num_image_token ** 0.5))
    if num_tiles is None or region_masks is None:
        raise ImageTokenMismatchError("region tokens (<vp> ... </vp>) need num_tiles and region_masks")
    first_tile = [sum(num_tiles[:b]) for b in range(len(num_tiles))]
    feats = []
    for b, n in enumerate(in_region.sum(1).tolist()):
        if n == 0:
            continue
        masks = region_masks[b]
        if masks is None or num_tiles[b] != 1:
            raise ImageTokenMismatchError(f"sample {b}: region tokens need region_masks and exactly one tile "
                                          f"(got {num_tiles[b]})")
        tile = vis[first_tile[b]].reshape(grid, grid, -1)
        cells = [torch.from_numpy(region_token_cells(m.cpu().numpy(), grid)).to(tile.device) for m in masks]
        if sum(int(c.sum()) for c in cells) != n:
            raise ImageTokenMismatchError(f"sample {b}: {n} region tokens but its {len(cells)} region mask(s) "
                                          f"cover {sum(int(c.sum()) for c in cells)} cells of the {grid}x{grid} grid")
        feats += [tile[c] for c in cells]
    return torch.cat(feats)

