"""Where the files of a flow store live, and atomic writes of them.

A store directory holds::

    manifest.json                 written last: its presence means "complete"
    captures/c00000/done.json     one folder per finished capture, renamed into
    captures/c00000/s00000/<column>.npy    place when the capture is done
    captures/c00000.partial/      a capture being written (removed on resume)
    side/<name>.npy, side/<name>.json      per-flow side data (labels, split, ...)
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
from typing import Any

import numpy as np

FORMAT_NAME = "stfe-jax-flow-store"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DONE_NAME = "done.json"
_SIDE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def manifest_path(store_dir: pathlib.Path) -> pathlib.Path:
    """The manifest file of a store."""
    return store_dir / MANIFEST_NAME


def capture_dir(store_dir: pathlib.Path, capture_index: int) -> pathlib.Path:
    """The folder of a finished capture's shards."""
    return store_dir / "captures" / f"c{capture_index:05d}"


def partial_capture_dir(store_dir: pathlib.Path, capture_index: int) -> pathlib.Path:
    """The folder a capture's shards are written to before it is finished."""
    return store_dir / "captures" / f"c{capture_index:05d}.partial"


def shard_name(shard_index: int) -> str:
    """The folder name of one shard inside its capture's folder."""
    return f"s{shard_index:05d}"


def side_path(store_dir: pathlib.Path, name: str, suffix: str) -> pathlib.Path:
    """The file of a side array (``.npy``) or side document (``.json``)."""
    if not _SIDE_NAME.match(name):
        raise ValueError(
            f"side data name {name!r}: use letters, digits, '_', '-' and '.' only"
        )
    return store_dir / "side" / f"{name}{suffix}"


def write_json_atomic(path: pathlib.Path, obj: Any) -> None:
    """Write ``obj`` as JSON so that ``path`` holds either the old or the new file."""
    text = json.dumps(obj, indent=1, sort_keys=False, allow_nan=False)
    _write_atomic(path, lambda f: f.write(text.encode()))


def write_npy_atomic(path: pathlib.Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` so that ``path`` holds the old or the new file."""
    _write_atomic(path, lambda f: np.save(f, array, allow_pickle=False))


def _write_atomic(path: pathlib.Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_json(path: pathlib.Path) -> Any:
    """A JSON file's content."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
