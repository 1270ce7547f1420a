"""What config inheritance cannot express: a learning-rate schedule derived from `max_iters` (configs that
change `max_iters` call it again). Configs are read with `lazy_import=False` (tools/train.py does), which
lets them import it."""
from __future__ import annotations

from typing import Any, Dict, List


def warmup_cosine(max_iters: int, warmup_iters: int, start_factor: float = 1e-3) -> List[Dict[str, Any]]:
    """Linear warm-up then cosine decay to 0, per iteration."""
    return [dict(type="LinearLR", start_factor=start_factor, by_epoch=False, begin=0, end=warmup_iters),
            dict(type="CosineAnnealingLR", eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters)]
