"""Annotation records stored as one numpy byte buffer instead of Python objects.

DataLoader workers fork the main process; touching Python objects updates their reference counts and
copies the pages they live on into every worker. Pickled records in a single numpy array are read-only
bytes, shared by all workers (the approach detectron2 takes).
"""
from __future__ import annotations

import pickle
from typing import Any, Iterable

import numpy as np


class PackedRecords:
    def __init__(self, records: Iterable[Any]):
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        self._offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
        self._data = np.frombuffer(b"".join(blobs), dtype=np.uint8) if blobs else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> Any:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return pickle.loads(self._data[self._offsets[i]:self._offsets[i + 1]].tobytes())

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes + self._offsets.nbytes)
