"""Mixing datasets: a concatenation with per-dataset repeats, and a sampler that keeps one kind per batch.

- `MixedDataset(datasets, repeats, common, view)`: dataset k appears `repeats[k]` times per epoch (a fraction
  takes a seeded random subset for the remainder); its length is computed from `len(dataset)`, so every
  sample of every dataset is reachable (Sa2VA's video datasets reported one length per video but were
  repeated, leaving the tail unreachable). `datasets` may hold lists (groups, flattened in order, as the
  config bases name them); `common` holds settings given to every dataset config that does not set them
  (model_path, sam_size, ...); `view='text_pretrain'` wraps every dataset in the stage-1 view.
  `modality_length` (one int per index, each reader's `modality_length_of`) is what xtuner's
  `LengthGroupedSampler` (Sa2VA's sampler, registered by the project) groups batches by.
- `KindGroupedSampler`: per epoch, shuffles the indices of each kind (image / video / text), cuts them
  into batches of `batch_size` of one kind (the last one filled up with other indices of that kind, so
  a DataLoader with the same `batch_size` never mixes kinds), shuffles the batches and deals them to
  the ranks. Every index is visited at least once per epoch; when the number of batches does not
  divide by the world size, the first batches are repeated to even the ranks out.
"""
from __future__ import annotations

import math
import random
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch


class MixedDataset(torch.utils.data.Dataset):
    def __init__(self, datasets: Sequence, repeats: Optional[Sequence[float]] = None, seed: int = 0,
                 common: Optional[dict] = None, view: Optional[str] = None):
        from mmengine.registry import DATASETS

        if view not in (None, "text_pretrain"):
            raise ValueError(f"view must be None or 'text_pretrain', got {view!r}")
        flat = [d for group in datasets for d in (group if isinstance(group, (list, tuple)) else [group])]
        self.datasets = [DATASETS.build({**(common or {}), **d}) if isinstance(d, dict) else d for d in flat]
        if view == "text_pretrain":
            from .text_pretrain import TextPretrainView

            self.datasets = [TextPretrainView(d) for d in self.datasets]
        repeats = list(repeats) if repeats is not None else [1.0] * len(self.datasets)
        if len(repeats) != len(self.datasets) or any(r < 0 for r in repeats):
            raise ValueError(f"repeats {repeats} must give a non-negative value for each of {len(self.datasets)} datasets")
        rng = np.random.default_rng(seed)
        ds_idx, item_idx = [], []
        for k, (ds, r) in enumerate(zip(self.datasets, repeats)):
            n = len(ds)
            whole, frac = int(r), r - int(r)
            idx = np.concatenate([np.tile(np.arange(n), whole), rng.permutation(n)[:int(round(frac * n))]])
            ds_idx.append(np.full(len(idx), k, dtype=np.int32))
            item_idx.append(idx.astype(np.int64))
        self.ds_idx = np.concatenate(ds_idx) if ds_idx else np.zeros(0, np.int32)
        self.item_idx = np.concatenate(item_idx) if item_idx else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.ds_idx)

    def __getitem__(self, index: int):
        return self.datasets[self.ds_idx[index]][int(self.item_idx[index])]

    def kind_of(self, index: int) -> str:
        ds = self.datasets[self.ds_idx[index]]
        return ds.kind_of(int(self.item_idx[index])) if hasattr(ds, "kind_of") else getattr(ds, "kind", "image")

    @property
    def modality_length(self) -> List[int]:
        """Sa2VA's grouping length of every index (computed once, without loading a sample)."""
        if not hasattr(self, "_modality_length"):
            self._modality_length = [int(self.datasets[d].modality_length_of(int(i)))
                                     for d, i in zip(self.ds_idx, self.item_idx)]
        return self._modality_length


class KindGroupedSampler(torch.utils.data.Sampler):
    def __init__(self, dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        if num_replicas is None or rank is None:
            from mmengine.dist import get_dist_info

            rank, num_replicas = get_dist_info()
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed = 0 if seed is None else int(seed)  # mmengine passes seed=None when no seed is set
        self.rank, self.world = rank, num_replicas
        self.epoch = 0
        kind_of = getattr(dataset, "kind_of", lambda i: "image")
        self.by_kind = {}
        for i in range(len(dataset)):
            self.by_kind.setdefault(kind_of(i), []).append(i)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> List[List[int]]:
        rng = random.Random(self.seed + self.epoch)
        batches = []
        for kind in sorted(self.by_kind):
            idx = list(self.by_kind[kind])
            if self.shuffle:
                rng.shuffle(idx)
            kind_batches = [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
            short = self.batch_size - len(kind_batches[-1])
            if short:  # keep DataLoader chunks aligned with kinds: fill with other indices of this kind
                kind_batches[-1] += [rng.choice(idx) for _ in range(short)]
            batches += kind_batches
        if self.shuffle:
            rng.shuffle(batches)
        per_rank = math.ceil(len(batches) / self.world)
        return (batches + batches[:per_rank * self.world - len(batches)])[self.rank::self.world]

    def __iter__(self) -> Iterator[int]:
        return iter([i for b in self._batches() for i in b])

    def __len__(self) -> int:
        return sum(len(b) for b in self._batches())
