"""Building a flow store on a Dask cluster: one task per capture, then a manifest.

``preprocess_captures`` sorts the captures by URL, skips those whose done record
already holds them, sends one ``build_capture_shards`` task per remaining capture
to the cluster (a capture whose task fails is retried, then recorded with its
error while the others go on), and merges the done records into the store's
manifest, written last. The cluster is a ``LocalCluster`` of worker processes on
127.0.0.1 unless a scheduler address or a ``Client`` is given.

TODO: ``Store.open`` and training read local paths only; a store written to an
object store must be copied down or mounted (gcsfuse, s3fs-fuse) to train on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dask
import distributed
import tqdm
from absl import logging

from stfe_jax import __version__
from stfe_jax.distributed import fsio
from stfe_jax.distributed.capture_job import CaptureJob, build_capture_shards
from stfe_jax.flows.options import FlowOptions
from stfe_jax.store import layout
from stfe_jax.store.build import column_specs
from stfe_jax.store.errors import StoreConfigMismatchError, StoreFormatError
from stfe_jax.store.store import config_differences


@dataclasses.dataclass
class PreprocessSummary:
    """What one ``preprocess_captures`` call did.

    Attributes:
      store: the store's root (absolute path or URL).
      manifest: the manifest now in the store.
      built: capture indices written by this call.
      skipped: capture indices whose done record was already there.
      failed: capture indices whose tasks failed in this call (recorded with their
        error, no flows).
      packets: packets read by this call.
      flows: flows written by this call.
      seconds: wall time of the call (cluster start included).
    """

    store: str
    manifest: dict[str, Any]
    built: list[int]
    skipped: list[int]
    failed: list[int]
    packets: int
    flows: int
    seconds: float


@contextlib.contextmanager
def cluster_client(
    scheduler: str | None = None, workers: int | None = None
) -> Iterator[distributed.Client]:
    """A Dask client: of the scheduler at ``scheduler`` (``tcp://host:8786``), or
    of a new ``LocalCluster`` of ``workers`` single-threaded worker processes
    (default: one per CPU) bound to 127.0.0.1 with no dashboard, closed on exit."""
    if scheduler:
        with distributed.Client(scheduler) as client:
            logging.info("Dask scheduler %s", scheduler)
            yield client
        return
    workers = workers or os.cpu_count() or 1
    with (
        # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers to hand freed
        # memory back at once; each capture allocates and frees ~100 MB of
        # buffers, and that setting made the per-capture work 1.2-1.5x slower.
        dask.config.set(
            {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
        ),
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            # No dashboard; the scheduler's small HTTP service (health checks)
            # listens on a free loopback port.
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        logging.info(
            "Dask LocalCluster of %d worker processes at %s",
            workers,
            cluster.scheduler_address,
        )
        yield client


def preprocess_captures(
    captures: Sequence[str | os.PathLike],
    store: str | os.PathLike,
    flows_config: Any,
    *,
    client: distributed.Client | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    shard_flows: int = 65536,
    retries: int = 1,
    retry_failed: bool = False,
    build_fn: Callable[[CaptureJob], dict] = build_capture_shards,
    progress: bool = True,
) -> PreprocessSummary:
    """Build (or finish) the flow store of ``captures`` at ``store`` on a cluster.

    Args:
      captures: capture paths, URLs or globs (pcap/pcapng, optionally gzip). They
        are sorted by URL; a capture's position there is its ``capture_index``.
      store: the store's root: a local path, ``file://``, or an object store URL
        (``s3://``, ``gs://`` with s3fs or gcsfs installed). ``Store.open`` and
        training read local (or mounted) stores.
      flows_config: the ``flows`` config section.
      client: a Dask client to use (else one is made from ``scheduler``/``workers``).
      scheduler: a Dask scheduler address; None starts a ``LocalCluster``.
      workers: worker processes of the ``LocalCluster`` (default: CPU count).
      shard_flows: most flows per shard file.
      retries: times a failed capture task is run again before it is recorded as
        failed (a worker that dies is replaced and its task rescheduled besides).
      retry_failed: also rebuild captures recorded as failed by an earlier call.
      build_fn: the per-capture task (default ``build_capture_shards``).
      progress: show a progress bar as captures finish.

    Returns:
      A ``PreprocessSummary``; the store's manifest lists every capture.

    Raises:
      StoreConfigMismatchError: the store holds captures cut with another config.
      StoreFormatError: the store holds records of another format version.
      FileNotFoundError: a capture pattern that names no file.
    """
    started = time.monotonic()
    if shard_flows < 1:
        raise ValueError(f"shard_flows must be positive, got {shard_flows}")
    options = FlowOptions.from_config(flows_config)
    urls = fsio.expand_captures(captures)
    store_fs, store_root = fsio.url_to_fs(store)
    store_url = fsio.canonical_url(store_fs, store_root)
    identities = [fsio.capture_identity(*fsio.url_to_fs(url)) for url in urls]

    records = _finished_records(
        store_fs, store_root, identities, options, retry_failed=retry_failed
    )
    todo = [i for i, record in enumerate(records) if record is None]
    skipped = [i for i, record in enumerate(records) if record is not None]
    logging.info(
        "store %s: %d captures, %d already done, %d to build",
        store_url,
        len(urls),
        len(skipped),
        len(todo),
    )

    manifest_file = fsio.join(store_root, layout.MANIFEST_NAME)
    stale = _stale_entries(store_fs, store_root, len(urls), rebuild=todo)
    if todo or stale:
        # A store being changed must never look finished.
        fsio.remove_tree(store_fs, manifest_file)
    for entry in stale:
        fsio.remove_tree(store_fs, entry)
    built, failed, packets, flows = [], [], 0, 0
    if todo:
        jobs = [
            CaptureJob(i, urls[i], store_url, options.to_dict(), shard_flows)
            for i in todo
        ]
        with contextlib.ExitStack() as stack:
            if client is None:
                client = stack.enter_context(cluster_client(scheduler, workers))
            for record in _run_jobs(
                client, jobs, identities, build_fn, retries, progress
            ):
                records[record["index"]] = record
                if record.get("task_failed"):
                    failed.append(record["index"])
                    fsio.remove_tree(
                        store_fs,
                        fsio.join(store_root, fsio.capture_folder(record["index"])),
                    )
                    fsio.write_json(
                        store_fs,
                        fsio.join(store_root, fsio.done_record_path(record["index"])),
                        record,
                    )
                else:
                    built.append(record["index"])
                    packets += record["packets_read"]
                    flows += record["flows_written"]

    manifest = _manifest(options, records)
    existing = fsio.read_json_files(store_fs, [manifest_file]).get(manifest_file)
    if existing != manifest:
        fsio.write_json(store_fs, manifest_file, manifest)
    seconds = time.monotonic() - started
    logging.info(
        "store %s: %d flows from %d captures (%d built, %d skipped, %d failed) "
        "in %.1f s",
        store_url,
        manifest["num_flows"],
        len(records),
        len(built),
        len(skipped),
        len(failed),
        seconds,
    )
    for index in failed:
        logging.warning(
            "capture %d %s failed: %s (rerun with retry_failed to try it again)",
            index,
            urls[index],
            records[index]["error"],
        )
    return PreprocessSummary(
        store=store_url,
        manifest=manifest,
        built=sorted(built),
        skipped=skipped,
        failed=sorted(failed),
        packets=packets,
        flows=flows,
        seconds=seconds,
    )


def _finished_records(
    fs, root: str, identities: list[dict[str, Any]], options, *, retry_failed: bool
) -> list[dict[str, Any] | None]:
    """The done record of every capture an earlier call finished from the same
    file with the same config (None where the capture must be built)."""
    paths = [fsio.join(root, fsio.done_record_path(i)) for i in range(len(identities))]
    found = fsio.read_json_files(fs, paths)
    records: list[dict[str, Any] | None] = []
    for path, identity in zip(paths, identities, strict=True):
        record = found.get(path)
        if record is not None:
            _check_record(record, path, options)
            if not fsio.same_capture(record, identity):
                record = None
            elif record.get("task_failed") and retry_failed:
                record = None
        records.append(record)
    return records


def _check_record(record: dict[str, Any], path: str, options: FlowOptions) -> None:
    if (
        record.get("format") != layout.FORMAT_NAME
        or record.get("format_version") != layout.FORMAT_VERSION
    ):
        raise StoreFormatError(
            f"{path}: store format {record.get('format')!r} version "
            f"{record.get('format_version')!r}, expected {layout.FORMAT_NAME!r} "
            f"version {layout.FORMAT_VERSION}; use another store directory"
        )
    differences = config_differences(record.get("flows_config", {}), options.to_dict())
    if differences:
        raise StoreConfigMismatchError(
            f"{path}: built with another flows config ({'; '.join(differences)}); "
            "use another store directory or the same config"
        )


def _stale_entries(fs, root: str, num_captures: int, rebuild: list[int]) -> list[str]:
    """The folders of captures to rebuild, of captures beyond the list, and
    anything else in ``captures/`` that is no capture folder of this store (such
    as a single-process build's ``.partial`` folders)."""
    folder = fsio.join(root, "captures")
    if not fs.exists(folder):
        return []
    keep = {fsio.capture_folder(i).rsplit("/", 1)[-1] for i in range(num_captures)}
    keep -= {fsio.capture_folder(i).rsplit("/", 1)[-1] for i in rebuild}
    return [
        entry
        for entry in sorted(fs.ls(folder, detail=False))
        if entry.rstrip("/").rsplit("/", 1)[-1] not in keep
    ]


def _run_jobs(
    client: distributed.Client,
    jobs: list[CaptureJob],
    identities: list[dict[str, Any]],
    build_fn: Callable[[CaptureJob], dict],
    retries: int,
    progress: bool,
) -> Iterator[dict[str, Any]]:
    """Runs the jobs on the cluster and yields each capture's record as it
    finishes (for a failed task, a record of its error)."""
    run_id = uuid.uuid4().hex[:8]
    keys = [f"capture-{job.index:05d}-{run_id}" for job in jobs]
    futures = client.map(build_fn, jobs, key=keys, retries=retries, pure=False)
    job_of = {future.key: job for future, job in zip(futures, jobs, strict=True)}
    started = time.monotonic()
    packets = flows = done = 0
    bar = tqdm.tqdm(total=len(jobs), unit="capture", disable=not progress)
    try:
        for future in distributed.as_completed(futures):
            job = job_of[future.key]
            done += 1
            if future.status == "finished":
                record = future.result()
                packets += record["packets_read"]
                flows += record["flows_written"]
            else:
                record = _failure_record(job, identities[job.index], future, retries)
            elapsed = max(time.monotonic() - started, 1e-9)
            logging.info(
                "capture %d/%d done (index %d, %s): %d packets -> %d flows%s; "
                "%.0f packets/s, %.0f flows/s so far",
                done,
                len(jobs),
                job.index,
                job.capture,
                record["packets_read"],
                record["flows_written"],
                f", error: {record['error']}" if record["error"] else "",
                packets / elapsed,
                flows / elapsed,
            )
            bar.update(1)
            bar.set_postfix(packets=packets, flows=flows)
            future.release()
            yield record
    finally:
        bar.close()
        client.cancel([f for f in futures if not f.done()])


def _failure_record(
    job: CaptureJob, identity: dict[str, Any], future, retries: int
) -> dict[str, Any]:
    """The record of a capture whose task failed every time it ran."""
    if future.status == "error":
        error = future.exception()
        message = f"{type(error).__name__}: {error}"
        trace = "".join(traceback.format_tb(future.traceback()))
    else:
        message, trace = f"task {future.status}", ""
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
        "error": f"task failed after {retries + 1} attempts: {message}",
        "task_failed": True,
        "traceback": trace,
        "sha256": None,
        "flows_written": 0,
        "shards": [],
        "stats": None,
        "seconds": None,
    }


def _manifest(options: FlowOptions, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The store manifest over the done records (in capture order)."""
    return {
        "format": layout.FORMAT_NAME,
        "format_version": layout.FORMAT_VERSION,
        "stfe_jax_version": __version__,
        "flows_config": options.to_dict(),
        "columns": column_specs(options),
        "num_flows": int(sum(r["flows_written"] for r in records)),
        "captures": records,
    }
