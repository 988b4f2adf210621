"""One capture into its shards at a store URL: the task a cluster worker runs.

``build_capture_shards`` reads one capture (any fsspec URL), cuts it into flows and
writes the flow columns as ``.npy`` shards straight into the store's folder for
that capture, then writes the capture's done record last and returns the record.
The layout and the record are those of ``stfe_jax.store.build``, so the finished
store opens with ``stfe_jax.store.Store.open`` and a single-process build can
resume it. Object stores have no rename: a capture folder without a done record
is unfinished, and is cleared before the capture is written again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
from typing import Any

import numpy as np
from absl import logging

from stfe_jax.capture import CaptureFormatError, open_capture
from stfe_jax.distributed import fsio
from stfe_jax.flows import FlowBatch, cut_flows
from stfe_jax.flows.options import FlowOptions
from stfe_jax.store import layout

_DRAIN_CHUNK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class CaptureJob:
    """What a worker needs to build one capture (small, sent over the network).

    Attributes:
      index: the capture's position in the sorted capture list; every flow of it
        gets this ``capture_index`` and its folder is ``captures/c<index>``.
      capture: the capture's URL or absolute local path.
      store: the store's root URL or absolute local path.
      flows_config: the flows config as a plain dict (``FlowOptions.to_dict()``).
      shard_flows: most flows per shard file.
    """

    index: int
    capture: str
    store: str
    flows_config: dict
    shard_flows: int


class _HashingReader:
    """A binary file object that hashes (sha256) every byte read through it."""

    def __init__(self, raw):
        self._raw = raw
        self._digest = hashlib.sha256()
        self.name = getattr(raw, "name", "<stream>")

    def seekable(self) -> bool:
        return True  # a file read to its end, not a live stream

    def readinto(self, view) -> int:
        n = self._raw.readinto(view) or 0
        self._digest.update(memoryview(view)[:n])
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        return data

    def hexdigest_of_whole_file(self) -> str:
        """The sha256 of the file, reading whatever the reader left unread."""
        while data := self._raw.read(_DRAIN_CHUNK_BYTES):
            self._digest.update(data)
        return self._digest.hexdigest()


class _ShardWriter:
    """Buffers flows and writes them in shards of exactly ``shard_flows`` flows
    (the last one smaller), one ``.npy`` file per column."""

    def __init__(self, fs, folder: str, shard_flows: int):
        self.fs = fs
        self.folder = folder
        self.shard_flows = shard_flows
        self.shards: list[dict[str, Any]] = []
        self.flows_written = 0
        self._pending: list[FlowBatch] = []
        self._pending_flows = 0

    def add(self, flows: FlowBatch) -> None:
        self._pending.append(flows)
        self._pending_flows += len(flows)
        while self._pending_flows >= self.shard_flows:
            self._write(self.shard_flows)

    def close(self) -> None:
        if self._pending_flows:
            self._write(self._pending_flows)

    def _write(self, count: int) -> None:
        names = [field.name for field in dataclasses.fields(FlowBatch)]
        merged = {
            name: np.concatenate([getattr(b, name) for b in self._pending])
            for name in names
        }
        shard = fsio.join(self.folder, layout.shard_name(len(self.shards)))
        self.fs.makedirs(shard, exist_ok=True)
        for name in names:
            with self.fs.open(fsio.join(shard, f"{name}.npy"), "wb") as f:
                np.save(f, merged[name][:count], allow_pickle=False)
        self.shards.append(
            {"name": layout.shard_name(len(self.shards)), "num_flows": count}
        )
        self.flows_written += count
        rest = merged["n_packets"].shape[0] - count
        self._pending = (
            [FlowBatch(**{name: merged[name][count:] for name in names})]
            if rest
            else []
        )
        self._pending_flows = rest


def _batches_until_os_error(batches, record: dict[str, Any]):
    """The batches, ending early (with ``record["error"]`` set) when reading the
    capture fails, so that the flows open at that point are still written."""
    try:
        yield from batches
    except OSError as err:
        record["error"] = f"OSError: {err}"


def _new_record(job: CaptureJob, identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": layout.FORMAT_NAME,
        "format_version": layout.FORMAT_VERSION,
        "index": job.index,
        **identity,
        "flows_config": dict(job.flows_config),
        "capture_format": None,
        "link_types": {},
        "packets_read": 0,
        "warnings": [],
        "error": None,
    }


def build_capture_shards(job: CaptureJob) -> dict[str, Any]:
    """Read one capture into its shards and done record at the store; returns
    the record (a JSON-able dict, a few kB).

    A capture that is damaged part-way keeps the flows read before the damage
    and its record says why in ``error``; a file that is no capture gets a record
    with no flows. Failing to write the store raises (the scheduler retries).

    The record holds the capture's ``path``, ``size`` (bytes), ``mtime_ns``,
    ``sha256``, ``capture_format``, ``link_types``, ``packets_read``,
    ``flows_written``, ``shards`` (name and ``num_flows`` of each), the cutter's
    ``stats``, ``warnings``, ``error``, ``seconds`` and the worker's ``host``.
    """
    started = time.monotonic()
    options = FlowOptions.from_config(job.flows_config)
    capture_fs, capture_path = fsio.url_to_fs(job.capture)
    store_fs, store_root = fsio.url_to_fs(job.store)
    identity = fsio.capture_identity(capture_fs, capture_path)
    folder = fsio.join(store_root, fsio.capture_folder(job.index))
    fsio.remove_tree(store_fs, folder)
    store_fs.makedirs(folder, exist_ok=True)

    writer = _ShardWriter(store_fs, folder, job.shard_flows)
    record = _new_record(job, identity)
    stats = None
    sha256 = None
    with capture_fs.open(capture_path, "rb") as raw:
        hashed = _HashingReader(raw)
        try:
            with open_capture(hashed) as capture:
                record["capture_format"] = capture.format
                batches = _batches_until_os_error(capture.batches(), record)
                stream = cut_flows(batches, options, capture_index=job.index)
                for flows in stream:
                    writer.add(flows)
                stats = stream.stats
                record["link_types"] = {
                    str(k): v for k, v in capture.link_types.items()
                }
                record["packets_read"] = capture.packets_read
                record["warnings"] = list(capture.warnings)
                record["error"] = record["error"] or capture.error
        except CaptureFormatError as err:
            record["error"] = f"CaptureFormatError: {err}"
        try:
            sha256 = hashed.hexdigest_of_whole_file()
        except OSError as err:
            record["warnings"].append(f"{job.capture}: sha256 failed: {err}")
    writer.close()

    record["sha256"] = sha256
    record["flows_written"] = writer.flows_written
    record["shards"] = writer.shards
    record["stats"] = stats.to_dict() if stats is not None else None
    record["seconds"] = round(time.monotonic() - started, 3)
    record["host"] = f"{socket.gethostname()}:{os.getpid()}"
    if record["error"]:
        logging.warning("capture %d %s: %s", job.index, job.capture, record["error"])
    fsio.write_json(
        store_fs, fsio.join(store_root, fsio.done_record_path(job.index)), record
    )
    return record
