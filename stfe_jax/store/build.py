"""Building a flow store from captures: shards as each capture streams in, resumable.

Each capture is read, cut into flows and written as shards of at most
``shard_flows`` flows into ``captures/cNNNNN.partial/``; when the capture is done a
``done.json`` record (provenance and counts) is written and the folder renamed to
``captures/cNNNNN/``. The manifest is written last, atomically. A rerun with the
same captures and config keeps every finished capture and redoes the others, so a
killed build resumes after the last finished capture and never looks complete.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import pathlib
import shutil
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from stfe_jax import __version__
from stfe_jax.capture import CaptureFormatError, open_capture
from stfe_jax.flows import FLOW_COLUMNS, SAMPLE_COLUMNS, FlowBatch, cut_flows
from stfe_jax.flows.options import FlowOptions
from stfe_jax.store import layout
from stfe_jax.store.errors import StoreConfigMismatchError, StoreFormatError
from stfe_jax.store.store import Store, config_differences

_HASH_CHUNK_BYTES = 1 << 20


def column_specs(options: FlowOptions) -> dict[str, dict[str, Any]]:
    """Column name -> {"dtype", "shape"} (shape per flow) for a flows config."""
    p, b = options.packets_per_flow, options.bytes_per_packet
    specs = {
        "packets": {"dtype": "uint8", "shape": [p, b]},
        "packet_caplen": {"dtype": "uint16", "shape": [p]},
        "direction": {"dtype": "uint8", "shape": [p]},
        "iat_s": {"dtype": "float32", "shape": [p]},
    }
    assert set(specs) == set(SAMPLE_COLUMNS)
    for name, (dtype, shape) in FLOW_COLUMNS.items():
        specs[name] = {"dtype": np.dtype(dtype).name, "shape": list(shape)}
    return specs


def build_store(
    captures: Sequence[str | os.PathLike],
    store_dir: str | os.PathLike,
    flows_config: Any,
    *,
    shard_flows: int = 65536,
    workers: int = 1,
) -> Store:
    """Read captures into a store of flow sample tensors (or resume such a build).

    Args:
      captures: capture files (pcap/pcapng, optionally gzip); their order gives
        each flow's ``capture_index``.
      store_dir: the store directory (created when absent).
      flows_config: the ``flows`` config section (see ``FlowOptions``).
      shard_flows: most flows per shard file (memory held while writing is about
        one shard: ``shard_flows * packets_per_flow * bytes_per_packet`` bytes).
      workers: captures read in parallel (separate processes).

    Returns:
      The finished ``Store``.

    Raises:
      StoreConfigMismatchError: the directory holds a store (finished or not)
        built with another flows config.
      StoreFormatError: the directory holds a store of another format version.
    """
    if shard_flows < 1:
        raise ValueError(f"shard_flows must be positive, got {shard_flows}")
    options = FlowOptions.from_config(flows_config)
    store_dir = pathlib.Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    paths = [pathlib.Path(p) for p in captures]
    identities = [_capture_identity(p) for p in paths]

    existing = _check_existing_manifest(store_dir, options, identities)
    if existing is not None:
        return existing
    for leftover in store_dir.glob(f".{layout.MANIFEST_NAME}.*.tmp"):
        leftover.unlink()  # from a build killed while writing the manifest

    # Keep the captures finished by an earlier run with the same inputs.
    records: list[dict[str, Any] | None] = []
    for index, identity in enumerate(identities):
        records.append(_finished_record(store_dir, index, identity, options))
    _remove_stale(store_dir, len(paths), records)
    todo = [i for i, record in enumerate(records) if record is None]
    if len(todo) < len(paths):
        logging.info(
            "store %s: resuming, %d of %d captures already done",
            store_dir,
            len(paths) - len(todo),
            len(paths),
        )

    jobs = [(i, str(paths[i]), str(store_dir), options, shard_flows) for i in todo]
    if workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)), mp_context=context
        ) as pool:
            for record in pool.map(_build_capture_job, jobs):
                records[record["index"]] = record
    else:
        for job in jobs:
            record = _build_capture_job(job)
            records[record["index"]] = record

    manifest = {
        "format": layout.FORMAT_NAME,
        "format_version": layout.FORMAT_VERSION,
        "stfe_jax_version": __version__,
        "flows_config": options.to_dict(),
        "columns": column_specs(options),
        "num_flows": int(sum(r["flows_written"] for r in records)),
        "captures": records,
    }
    layout.write_json_atomic(layout.manifest_path(store_dir), manifest)
    logging.info(
        "store %s: %d flows from %d captures",
        store_dir,
        manifest["num_flows"],
        len(records),
    )
    return Store.open(store_dir, expect_flows_config=options)


def _capture_identity(path: pathlib.Path) -> dict[str, Any]:
    """What identifies a capture's content cheaply: its path, size and mtime."""
    stat = path.stat()
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _same_capture(record: dict[str, Any], identity: dict[str, Any]) -> bool:
    return all(record.get(key) == value for key, value in identity.items())


def _check_existing_manifest(
    store_dir: pathlib.Path, options: FlowOptions, identities: list[dict[str, Any]]
) -> Store | None:
    """The existing store when it already holds exactly these captures; else None
    (after removing a manifest of other captures, which is rebuilt)."""
    path = layout.manifest_path(store_dir)
    if not path.exists():
        return None
    manifest = layout.read_json(path)
    _check_format(manifest, path)
    _check_config(manifest.get("flows_config", {}), options, path)
    captures = manifest.get("captures", [])
    if len(captures) == len(identities) and all(
        _same_capture(record, identity)
        for record, identity in zip(captures, identities, strict=True)
    ):
        logging.info("store %s: already built from these captures", store_dir)
        return Store.open(store_dir, expect_flows_config=options)
    logging.info("store %s: built from other captures, rebuilding", store_dir)
    os.remove(path)
    return None


def _check_format(document: dict[str, Any], path: pathlib.Path) -> None:
    if (
        document.get("format") != layout.FORMAT_NAME
        or document.get("format_version") != layout.FORMAT_VERSION
    ):
        raise StoreFormatError(
            f"{path}: store format {document.get('format')!r} version "
            f"{document.get('format_version')!r}, expected {layout.FORMAT_NAME!r} "
            f"version {layout.FORMAT_VERSION}; use another store directory"
        )


def _check_config(found: dict[str, Any], options: FlowOptions, path) -> None:
    differences = config_differences(found, options.to_dict())
    if differences:
        raise StoreConfigMismatchError(
            f"{path}: built with another flows config ({'; '.join(differences)}); "
            "use another store directory or the same config"
        )


def _finished_record(
    store_dir: pathlib.Path, index: int, identity: dict[str, Any], options
) -> dict[str, Any] | None:
    """The done record of capture ``index`` when an earlier run finished it from
    the same file with the same config; None when it must be (re)built."""
    done = layout.capture_dir(store_dir, index) / layout.DONE_NAME
    if not done.exists():
        return None
    record = layout.read_json(done)
    _check_format(record, done)
    _check_config(record.get("flows_config", {}), options, done)
    if not _same_capture(record, identity):
        return None
    return record


def _remove_stale(
    store_dir: pathlib.Path, num_captures: int, records: list[dict[str, Any] | None]
) -> None:
    """Remove partial captures, captures to rebuild and captures beyond the list."""
    folder = store_dir / "captures"
    if not folder.exists():
        return
    keep = {layout.capture_dir(store_dir, i).name for i, r in enumerate(records) if r}
    for entry in sorted(folder.iterdir()):
        if entry.name not in keep:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _build_capture_job(job: tuple) -> dict[str, Any]:
    index, path, store_dir, options, shard_flows = job
    return build_capture(
        index, pathlib.Path(path), pathlib.Path(store_dir), options, shard_flows
    )


class _Sha256Thread(threading.Thread):
    """Hashes a file beside the reader (hashlib releases the GIL)."""

    def __init__(self, path: pathlib.Path):
        super().__init__(daemon=True)
        self.path = path
        self.digest: str | None = None
        self.error: str | None = None

    def run(self) -> None:
        digest = hashlib.sha256()
        try:
            with open(self.path, "rb") as f:
                while chunk := f.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
        except OSError as err:
            self.error = f"{self.path}: sha256 failed: {err}"
            return
        self.digest = digest.hexdigest()


class _ShardWriter:
    """Copies flows into one shard's worth of column buffers (allocated once) and
    writes each full buffer out as a shard of ``shard_flows`` flows."""

    def __init__(self, folder: pathlib.Path, shard_flows: int, options: FlowOptions):
        self.folder = folder
        self.shard_flows = shard_flows
        self.shards: list[dict[str, Any]] = []
        self.flows_written = 0
        self._buffers = {
            name: np.empty((shard_flows, *spec["shape"]), dtype=spec["dtype"])
            for name, spec in column_specs(options).items()
        }
        self._filled = 0

    def add(self, flows: FlowBatch) -> None:
        """Buffer ``flows``, writing every shard that fills up."""
        offset = 0
        while offset < len(flows):
            take = min(len(flows) - offset, self.shard_flows - self._filled)
            for name, buffer in self._buffers.items():
                buffer[self._filled : self._filled + take] = getattr(flows, name)[
                    offset : offset + take
                ]
            self._filled += take
            offset += take
            if self._filled == self.shard_flows:
                self._write(self._filled)

    def close(self) -> None:
        """Write the flows still buffered as a last, shorter shard."""
        if self._filled:
            self._write(self._filled)

    def _write(self, count: int) -> None:
        shard = self.folder / layout.shard_name(len(self.shards))
        shard.mkdir(parents=True)
        for name, buffer in self._buffers.items():
            np.save(shard / f"{name}.npy", buffer[:count], allow_pickle=False)
        self.shards.append({"name": shard.name, "num_flows": count})
        self.flows_written += count
        self._filled = 0


def _batches_until_os_error(batches, record: dict[str, Any]):
    """The batches, ending early (with ``record["error"]`` set) on a read error, so
    that the flows open at that point are still written."""
    try:
        yield from batches
    except OSError as err:
        record["error"] = f"OSError: {err}"


def build_capture(
    index: int,
    path: pathlib.Path,
    store_dir: pathlib.Path,
    options: FlowOptions,
    shard_flows: int,
) -> dict[str, Any]:
    """Read one capture into its shards and done record; returns the record.

    A capture that fails part-way keeps the flows read before the failure (the
    flows open at that point end there) and its record says why in ``error``; a
    file that cannot be opened as a capture gets a record with no flows.
    """
    started = time.monotonic()
    identity = _capture_identity(path)
    partial = layout.partial_capture_dir(store_dir, index)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    hasher = _Sha256Thread(path)
    hasher.start()

    writer = _ShardWriter(partial, shard_flows, options)
    record: dict[str, Any] = {
        "format": layout.FORMAT_NAME,
        "format_version": layout.FORMAT_VERSION,
        "index": index,
        **identity,
        "flows_config": options.to_dict(),
        "capture_format": None,
        "link_types": {},
        "packets_read": 0,
        "warnings": [],
        "error": None,
    }
    stats = None
    try:
        with open_capture(path) as capture:
            record["capture_format"] = capture.format
            batches = _batches_until_os_error(capture.batches(), record)
            stream = cut_flows(batches, options, capture_index=index)
            for flows in stream:
                writer.add(flows)
            stats = stream.stats
            record["link_types"] = {str(k): v for k, v in capture.link_types.items()}
            record["packets_read"] = capture.packets_read
            record["warnings"] = list(capture.warnings)
            record["error"] = record["error"] or capture.error
    except (CaptureFormatError, OSError) as err:
        record["error"] = f"{type(err).__name__}: {err}"
    writer.close()
    hasher.join()

    record["sha256"] = hasher.digest
    if hasher.error:
        record["warnings"].append(hasher.error)
    record["flows_written"] = writer.flows_written
    record["shards"] = writer.shards
    record["stats"] = stats.to_dict() if stats is not None else None
    record["seconds"] = round(time.monotonic() - started, 3)
    if record["error"]:
        logging.warning("capture %d %s: %s", index, path, record["error"])
    layout.write_json_atomic(partial / layout.DONE_NAME, record)
    final = layout.capture_dir(store_dir, index)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    logging.info(
        "capture %d %s: %d packets -> %d flows in %d shards (%.1f s, %.0f packets/s)",
        index,
        path,
        record["packets_read"],
        record["flows_written"],
        len(writer.shards),
        record["seconds"],
        record["packets_read"] / max(record["seconds"], 1e-9),
    )
    return record
