"""What training reads: flow columns, a label per flow, and the three splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

REQUIRED_COLUMNS = ("packets", "packet_caplen", "direction", "iat_s", "n_packets")


@dataclasses.dataclass
class Dataset:
    """Flows ready to train on.

    Attributes:
      arrays: column name -> array-like over all flows (first axis the flow index),
        at least ``packets`` (m, P, B) uint8, ``packet_caplen`` (m, P),
        ``direction`` (m, P), ``iat_s`` (m, P) seconds and ``n_packets`` (m,).
        Numpy arrays, memory-maps or the store's sharded columns.
      labels: int32 (m,), the class index of each flow (negative: unlabelled).
      class_names: name of each class index; the benign class is the one named
        "benign" or "normal", else class 0.
      train_idx, val_idx, test_idx: int flow indices of each split.
    """

    arrays: Mapping
    labels: np.ndarray
    class_names: Sequence[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray

    def __post_init__(self):
        missing = [name for name in REQUIRED_COLUMNS if name not in self.arrays]
        if missing:
            raise ValueError(f"dataset arrays lack the columns {missing}")
        self.labels = np.asarray(self.labels, dtype=np.int32)
        self.class_names = [str(name) for name in self.class_names]
        for name in ("train_idx", "val_idx", "test_idx"):
            indices = np.asarray(getattr(self, name), dtype=np.int64)
            setattr(self, name, indices)
            if indices.size and (
                indices.min() < 0 or indices.max() >= self.labels.shape[0]
            ):
                raise ValueError(
                    f"{name}: flow indices must lie in [0, {self.labels.shape[0]})"
                )
            bad = self.labels[indices] < 0
            if bad.any():
                raise ValueError(
                    f"{name}: flow {int(indices[bad][0])} has no label "
                    f"({int(self.labels[indices[bad][0]])})"
                )
        if self.train_idx.size == 0:
            raise ValueError("the training split is empty")

    @property
    def model_arrays(self) -> dict:
        """The columns a model reads."""
        return {name: self.arrays[name] for name in REQUIRED_COLUMNS}

    @property
    def normal_class(self) -> int:
        """Index of the benign class ("benign" or "normal" by name, else 0)."""
        lowered = [name.lower() for name in self.class_names]
        for name in ("benign", "normal"):
            if name in lowered:
                return lowered.index(name)
        return 0

    @classmethod
    def from_any(cls, dataset) -> Dataset:
        """A ``Dataset`` from itself, a dict, or an object with the same fields."""
        if isinstance(dataset, cls):
            return dataset
        fields = [field.name for field in dataclasses.fields(cls)]
        if isinstance(dataset, Mapping):
            return cls(**{name: dataset[name] for name in fields})
        return cls(**{name: getattr(dataset, name) for name in fields})
