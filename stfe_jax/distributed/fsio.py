"""Store files addressed by URL: local paths, ``file://`` and object storage.

Everything the cluster build writes goes through fsspec, so the same code writes a
store to a local disk, an NFS mount or a bucket (``s3://`` with s3fs, ``gs://`` with
gcsfs, both optional installs). Paths inside a store are the relative names of
``stfe_jax.store.layout``, joined to the store's root with ``/``.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from stfe_jax.store import layout

_GLOB_CHARACTERS = frozenset("*?[")


def url_to_fs(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``url`` and the path on it (local paths made absolute)."""
    fs, path = fsspec.core.url_to_fs(os.fspath(url))
    if is_local(fs):
        path = str(pathlib.Path(path).resolve())
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether ``fs`` is this machine's own filesystem."""
    return isinstance(fs, LocalFileSystem)


def canonical_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The one string that names a file: an absolute local path, or a URL with its
    protocol (``s3://bucket/key``)."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def join(root: str, relative: str) -> str:
    """``root/relative`` on any filesystem."""
    return f"{root.rstrip('/')}/{relative}"


def capture_folder(index: int) -> str:
    """The folder of capture ``index`` relative to the store root."""
    return layout.capture_dir(pathlib.PurePosixPath(), index).as_posix()


def done_record_path(index: int) -> str:
    """The done record of capture ``index`` relative to the store root."""
    return f"{capture_folder(index)}/{layout.DONE_NAME}"


def expand_captures(patterns: Sequence[str | os.PathLike]) -> list[str]:
    """Capture URLs from paths, URLs and globs, sorted and without repeats.

    Raises:
      FileNotFoundError: a pattern that names no existing file.
    """
    urls = []
    for pattern in patterns:
        text = os.fspath(pattern)
        fs, path = fsspec.core.url_to_fs(text)
        if _GLOB_CHARACTERS & set(path):
            if is_local(fs):
                matches = [
                    str(pathlib.Path(m).resolve())
                    for m in glob.glob(path, recursive=True)
                    if os.path.isfile(m)
                ]
            else:
                matches = [m for m in fs.glob(path) if fs.isfile(m)]
        else:
            if is_local(fs):
                path = str(pathlib.Path(path).resolve())
            matches = [path] if fs.isfile(path) else []
        if not matches:
            raise FileNotFoundError(f"captures {text!r}: no such file")
        urls.extend(canonical_url(fs, m) for m in matches)
    return sorted(dict.fromkeys(urls))


def capture_identity(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    """What identifies a capture's content cheaply: ``path`` (as written in the
    store's records), ``size`` in bytes and ``mtime_ns`` (None where the storage
    reports no modification time); object stores add their ``etag``."""
    # TODO: one request per capture on object stores; a glob's listing already
    # holds these fields and could be reused for archives of many thousand files.
    if is_local(fs):
        stat = os.stat(path)
        return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    info = fs.info(path)
    identity = {
        "path": canonical_url(fs, path),
        "size": int(info["size"]),
        "mtime_ns": _mtime_ns(info),
    }
    for key in ("ETag", "etag", "md5Hash"):
        if info.get(key):
            identity["etag"] = str(info[key]).strip('"')
            break
    return identity


def _mtime_ns(info: dict[str, Any]) -> int | None:
    """The modification time in an fsspec ``info`` dict, as ns since the epoch."""
    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime.datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, (int, float)):
            return int(value * 1e9)
        if isinstance(value, str):
            try:
                parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return int(parsed.timestamp() * 1e9)
    return None


def same_capture(record: dict[str, Any], identity: dict[str, Any]) -> bool:
    """Whether a done record was written from the capture ``identity`` names."""
    return all(record.get(key) == value for key, value in identity.items())


def write_json(fs: fsspec.AbstractFileSystem, path: str, obj: Any) -> None:
    """Write ``obj`` as JSON so that ``path`` holds either nothing (or the old
    file) or the whole new one: a rename on local disks, one upload on object
    stores (an object appears whole or not at all)."""
    if is_local(fs):
        layout.write_json_atomic(pathlib.Path(path), obj)
        return
    fs.pipe_file(path, json.dumps(obj, indent=1, allow_nan=False).encode())


def read_json_files(
    fs: fsspec.AbstractFileSystem, paths: Sequence[str]
) -> dict[str, Any]:
    """The JSON documents among ``paths`` that exist, by path (fetched together,
    concurrently on object stores)."""
    if not paths:
        return {}
    if is_local(fs):
        return {
            path: layout.read_json(pathlib.Path(path))
            for path in paths
            if os.path.exists(path)
        }
    contents = fs.cat(list(paths), on_error="omit")
    return {path: json.loads(data) for path, data in contents.items()}


def remove_tree(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a folder (or file) and everything below it; nothing when absent."""
    if fs.exists(path):
        fs.rm(path, recursive=True)
