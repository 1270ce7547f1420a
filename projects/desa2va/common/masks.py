"""The mask codec: COCO polygons and RLE (compressed or not) <-> boolean arrays, through pycocotools.

Used by every reader, by evaluation (results as RLE) and by the synthetic data generator.
Overlapping parts are combined as boolean unions, never summed.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np
from pycocotools import mask as mask_utils


class MaskDecodeError(ValueError):
    """A segmentation that cannot be decoded (corrupt RLE, malformed polygon, wrong size)."""


def decode_segmentation(seg: Union[List, Dict[str, Any]], height: int, width: int) -> np.ndarray:
    """COCO `segmentation` (list of polygons, uncompressed RLE {'counts': [..]}, or compressed RLE
    {'counts': str|bytes}) -> (height, width) bool."""
    try:
        if isinstance(seg, list):
            polys = [p for p in seg if len(p) >= 6]
            if not polys:
                return np.zeros((height, width), bool)
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        elif isinstance(seg, dict) and "counts" in seg:
            size = seg.get("size", [height, width])
            if isinstance(seg["counts"], list):
                rle = mask_utils.frPyObjects(seg, *size)
            else:
                counts = seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]
                rle = {"size": list(size), "counts": counts}
        else:
            raise MaskDecodeError(f"unknown segmentation type {type(seg).__name__}")
        m = mask_utils.decode(rle)
    except MaskDecodeError:
        raise
    except Exception as e:
        raise MaskDecodeError(f"cannot decode segmentation: {e}") from e
    if m.ndim == 3:
        m = m.any(axis=2)
    if m.shape != (height, width):
        raise MaskDecodeError(f"segmentation decodes to {m.shape}, expected {(height, width)}")
    return m.astype(bool)


def segmentation_area(seg: Union[List, Dict[str, Any], None], height: int, width: int) -> int:
    """Foreground pixels of a COCO `segmentation` without decoding it (None: 0)."""
    if seg is None:
        return 0
    try:
        if isinstance(seg, list):
            polys = [p for p in seg if len(p) >= 6]
            return int(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))) if polys else 0
        if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            return int(sum(seg["counts"][1::2]))
        counts = seg["counts"].encode() if isinstance(seg["counts"], str) else seg["counts"]
        return int(mask_utils.area({"size": list(seg["size"]), "counts": counts}))
    except Exception as e:
        raise MaskDecodeError(f"cannot read segmentation: {e}") from e


def encode_rle(mask: np.ndarray) -> Dict[str, Any]:
    """(H, W) bool -> compressed COCO RLE with a str `counts` (JSON-serialisable)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(x) for x in rle["size"]], "counts": rle["counts"].decode("ascii")}


def union(masks: Iterable[Optional[np.ndarray]], height: int, width: int) -> np.ndarray:
    """Boolean union of masks (None entries are skipped); all-False when there are none."""
    out = np.zeros((height, width), bool)
    for m in masks:
        if m is not None:
            out |= m.astype(bool)
    return out
