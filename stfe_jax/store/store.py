"""Opening a finished flow store: its manifest, memory-mapped columns and side data.

Columns are ``.npy`` shards opened with ``mmap_mode="r"``; ``Store.column(name)``
joins the shards of every capture (in capture order) into one array-like indexed by
flow. Side data (labels, splits, ...) is one array or JSON document per name,
written atomically and checked to have one row per flow. Nothing is unpickled.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from stfe_jax.flows.options import FlowOptions, config_to_dict
from stfe_jax.store import layout
from stfe_jax.store.errors import (
    StoreConfigMismatchError,
    StoreError,
    StoreFormatError,
    StoreIncompleteError,
)


def config_differences(found: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Human-readable differences between two flows configs ("key: a != b")."""
    out = []
    for key in sorted(set(found) | set(expected)):
        a = found.get(key, "<absent>")
        b = expected.get(key, "<absent>")
        if a != b:
            out.append(f"{key}: store has {a!r}, expected {b!r}")
    return out


# Shard files up to this size (bytes) are read into memory rather than mapped.
SMALL_SHARD_BYTES = 4 << 20


class StoreColumn:
    """One column over all shards of a store, indexed by flow.

    Supports ``len``, ``.shape``, ``.dtype``, and ``column[index]`` with an int, a
    slice, an integer index array or a boolean mask over flows (optionally followed
    by indices of the other axes, ``column[idx, 0]``); results are numpy arrays
    (copies, read from the memory-mapped shards).
    """

    def __init__(self, name: str, shards: list[np.ndarray], dtype, tail: tuple):
        self.name = name
        self._shards = shards
        self.dtype = np.dtype(dtype)
        self._tail = tuple(tail)
        sizes = [s.shape[0] for s in shards]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self._starts[-1]), *self._tail)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __array__(self, dtype=None, copy=None):
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, tuple):
            # Flows first, then the remaining axes on the rows read.
            rows = self[index[0]]
            rest = index[1:]
            if isinstance(index[0], (int, np.integer)):
                return rows[rest]
            return rows[(slice(None), *rest)]
        n = len(self)
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"flow {i} out of range for {n} flows")
            i %= n
            shard = int(np.searchsorted(self._starts, i, side="right")) - 1
            return np.asarray(self._shards[shard][i - self._starts[shard]])
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return self._range(start, stop)
            index = np.arange(start, stop, step)
        index = np.asarray(index)
        if index.dtype == np.bool_:
            if index.shape != (n,):
                raise IndexError(f"boolean mask of shape {index.shape}, need ({n},)")
            index = np.flatnonzero(index)
        if not np.issubdtype(index.dtype, np.integer):
            raise IndexError(f"flow index of dtype {index.dtype}: need integers")
        return self._take(index.astype(np.int64, copy=False))

    def _range(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(stop - start, 0), *self._tail), dtype=self.dtype)
        if stop <= start:
            return out
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop - 1, side="right")) - 1
        for shard in range(first, last + 1):
            lo = max(start, self._starts[shard])
            hi = min(stop, self._starts[shard + 1])
            out[lo - start : hi - start] = self._shards[shard][
                lo - self._starts[shard] : hi - self._starts[shard]
            ]
        return out

    def _take(self, index: np.ndarray) -> np.ndarray:
        n = len(self)
        flat = index.reshape(-1)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"flow index out of range for {n} flows")
        flat = np.where(flat < 0, flat + n, flat)
        out = np.empty((flat.size, *self._tail), dtype=self.dtype)
        shard_of = np.searchsorted(self._starts, flat, side="right") - 1
        for shard in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard)
            local = flat[rows] - self._starts[shard]
            order = np.argsort(local, kind="stable")
            out[rows[order]] = self._shards[shard][local[order]]
        return out.reshape(*index.shape, *self._tail)

    def __repr__(self) -> str:
        return f"StoreColumn({self.name!r}, shape={self.shape}, dtype={self.dtype})"


class Store:
    """A finished flow store (open it with ``Store.open``).

    Attributes:
      store_dir: the store directory.
      manifest: the parsed manifest (format, flows config, columns, captures).
      num_flows: flows in the store.
      captures: capture paths in ``capture_index`` order.
      options: the ``FlowOptions`` the store was built with.
    """

    def __init__(self, store_dir: pathlib.Path, manifest: dict[str, Any]):
        self.store_dir = store_dir
        self.manifest = manifest
        self.num_flows = int(manifest["num_flows"])
        self.captures = [record["path"] for record in manifest["captures"]]
        self.options = FlowOptions.from_config(manifest["flows_config"])
        self._columns: dict[str, StoreColumn] = {}

    @classmethod
    def open(
        cls, store_dir: str | os.PathLike, expect_flows_config: Any = None
    ) -> Store:
        """Open a finished store, refusing one that would be misread.

        Args:
          store_dir: the store directory.
          expect_flows_config: when given, the flows config the caller needs; a
            store built with another raises ``StoreConfigMismatchError`` naming
            every key that differs.

        Raises:
          StoreError: the directory does not exist.
          StoreIncompleteError: no manifest (the build never finished).
          StoreFormatError: another format version, or shards missing or of
            another shape than the manifest says.
        """
        store_dir = pathlib.Path(store_dir)
        if not store_dir.is_dir():
            raise StoreError(f"{store_dir}: no such store directory")
        path = layout.manifest_path(store_dir)
        if not path.exists():
            raise StoreIncompleteError(
                f"{store_dir}: no {layout.MANIFEST_NAME}; the store was never "
                "finished (an interrupted build resumes when build_store is run "
                "again with the same captures)"
            )
        manifest = layout.read_json(path)
        if (
            manifest.get("format") != layout.FORMAT_NAME
            or manifest.get("format_version") != layout.FORMAT_VERSION
        ):
            raise StoreFormatError(
                f"{path}: store format {manifest.get('format')!r} version "
                f"{manifest.get('format_version')!r}; this code reads "
                f"{layout.FORMAT_NAME!r} version {layout.FORMAT_VERSION} only"
            )
        if expect_flows_config is not None:
            expected = FlowOptions.from_config(expect_flows_config).to_dict()
            found = config_to_dict(manifest.get("flows_config", {}))
            differences = config_differences(found, expected)
            if differences:
                raise StoreConfigMismatchError(
                    f"{path}: store built with another flows config: "
                    + "; ".join(differences)
                )
        return cls(store_dir, manifest)

    @property
    def column_names(self) -> list[str]:
        """Names of the per-flow columns."""
        return list(self.manifest["columns"])

    def column(self, name: str) -> StoreColumn:
        """The column ``name`` over all flows (memory-mapped shards underneath)."""
        if name in self._columns:
            return self._columns[name]
        spec = self.manifest["columns"].get(name)
        if spec is None:
            raise KeyError(f"no column {name!r}; columns: {self.column_names}")
        tail = tuple(spec["shape"])
        shards = []
        for record in self.manifest["captures"]:
            folder = layout.capture_dir(self.store_dir, record["index"])
            for shard in record["shards"]:
                file = folder / shard["name"] / f"{name}.npy"
                if not file.exists():
                    raise StoreFormatError(f"{file}: shard file missing")
                # A memory map keeps a file descriptor open; a store of thousands
                # of small captures would exhaust the process's limit, so small
                # shards are read into memory instead.
                # TODO: a store of thousands of large shards still holds one
                # descriptor per shard and column; compacting shards would fix it.
                small = file.stat().st_size <= SMALL_SHARD_BYTES
                array = np.load(
                    file, mmap_mode=None if small else "r", allow_pickle=False
                )
                expected = (shard["num_flows"], *tail)
                if array.shape != expected or array.dtype != np.dtype(spec["dtype"]):
                    raise StoreFormatError(
                        f"{file}: expected {spec['dtype']} {expected}, found "
                        f"{array.dtype} {array.shape}"
                    )
                shards.append(array)
        column = StoreColumn(name, shards, spec["dtype"], tail)
        self._columns[name] = column
        return column

    def arrays(self, names: list[str] | None = None) -> dict[str, StoreColumn]:
        """Columns by name (all of them by default)."""
        return {name: self.column(name) for name in (names or self.column_names)}

    def write_side_array(self, name: str, array: np.ndarray) -> None:
        """Store per-flow side data (first axis: one row per flow), atomically."""
        array = np.asarray(array)
        if array.dtype == object:
            raise TypeError(f"side array {name!r}: object arrays are not stored")
        if array.ndim == 0 or array.shape[0] != self.num_flows:
            raise ValueError(
                f"side array {name!r} of shape {array.shape}: need "
                f"{self.num_flows} rows, one per flow"
            )
        layout.write_npy_atomic(layout.side_path(self.store_dir, name, ".npy"), array)

    def read_side_array(self, name: str) -> np.ndarray:
        """A side array written by ``write_side_array`` (memory-mapped, read-only)."""
        path = layout.side_path(self.store_dir, name, ".npy")
        if not path.exists():
            raise KeyError(f"{path}: no side array {name!r}")
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.shape[0] != self.num_flows:
            raise StoreFormatError(
                f"{path}: {array.shape[0]} rows, but the store holds "
                f"{self.num_flows} flows (written for another build?)"
            )
        return array

    def has_side(self, name: str) -> bool:
        """Whether a side array or document ``name`` exists."""
        return any(
            layout.side_path(self.store_dir, name, s).exists()
            for s in (".npy", ".json")
        )

    def write_side_json(self, name: str, obj: Any) -> None:
        """Store a JSON document beside the flows (e.g. a label report), atomically."""
        layout.write_json_atomic(layout.side_path(self.store_dir, name, ".json"), obj)

    def read_side_json(self, name: str) -> Any:
        """A document written by ``write_side_json``."""
        path = layout.side_path(self.store_dir, name, ".json")
        if not path.exists():
            raise KeyError(f"{path}: no side document {name!r}")
        return layout.read_json(path)

    def __repr__(self) -> str:
        return (
            f"Store({str(self.store_dir)!r}, num_flows={self.num_flows}, "
            f"captures={len(self.captures)})"
        )
