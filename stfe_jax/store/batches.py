"""Batches for training and evaluation, gathered from column arrays by flow index.

Training batches follow an order that depends only on ``(seed, step)``, so a run
resumed at step k sees exactly the batches an unbroken run sees from step k on.
Evaluation batches cover each flow exactly once; the last batch is padded to full
size and its padding rows carry ``mask == False``.

Columns are any array-likes indexable by an int64 array of flow indices (numpy
arrays, memory-maps, the store's sharded columns).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator, Mapping

import numpy as np
from absl import logging

JOIN_TIMEOUT_S = 60.0  # longest wait for the prefetch thread on close


def _take(column, flow_indices: np.ndarray) -> np.ndarray:
    """Rows ``flow_indices`` of ``column``, read in ascending index order (for
    locality in memory-mapped shards) and returned in the requested order."""
    order = np.argsort(flow_indices, kind="stable")
    rows = np.asarray(column[flow_indices[order]])
    result = np.empty_like(rows)
    result[order] = rows
    return result


def _gather(arrays: Mapping, flow_indices: np.ndarray, labels=None) -> dict:
    """Rows ``flow_indices`` of every column, and of ``labels`` as ``label``."""
    batch = {name: _take(column, flow_indices) for name, column in arrays.items()}
    if labels is not None:
        batch["label"] = _take(labels, flow_indices).astype(np.int32)
    return batch


@functools.lru_cache(maxsize=2)
def _epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


def class_members(flow_labels: np.ndarray) -> list[np.ndarray]:
    """Positions of the flows of each class present in ``flow_labels``."""
    _, inverse = np.unique(flow_labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse))[:-1]
    return np.split(order, bounds)


def train_batch_indices(
    num_flows: int,
    batch_size: int,
    step: int,
    *,
    seed: int,
    members: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Positions (into the training indices) of the flows of batch ``step``.

    Without class balance, epochs are seeded permutations laid end to end and batch
    ``step`` is positions ``[step * batch_size, (step + 1) * batch_size)`` of that
    sequence: every flow once per epoch. With class balance (``members``, from
    ``class_members``), each row draws a class uniformly and then a flow of that
    class uniformly (with replacement), from a generator seeded by
    ``(seed, step)``.
    """
    if num_flows == 0:
        raise ValueError("no training flows to draw batches from")
    if members is not None:
        rng = np.random.default_rng([seed, step, 1])
        drawn_classes = rng.integers(0, len(members), batch_size)
        positions = np.empty(batch_size, np.int64)
        for c, flows in enumerate(members):
            rows = np.flatnonzero(drawn_classes == c)
            positions[rows] = flows[rng.integers(0, flows.size, rows.size)]
        return positions

    start = step * batch_size
    positions = np.arange(start, start + batch_size, dtype=np.int64)
    epochs = positions // num_flows
    result = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        rows = epochs == epoch
        result[rows] = _epoch_permutation(seed, int(epoch), num_flows)[
            positions[rows] % num_flows
        ]
    return result


def _prefetch(iterator: Iterator[dict], size: int) -> Iterator[dict]:
    """``iterator`` run on a background thread, at most ``size`` items ahead."""
    items: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in iterator:
                if not put(item):
                    return
            put(done)
        except BaseException as error:  # handed to the consumer, raised there
            put(error)

    thread = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Wait for the producer to finish the batch in hand: a thread left inside
        # a device copy when the interpreter exits aborts the process.
        stop.set()
        thread.join(timeout=JOIN_TIMEOUT_S)
        if thread.is_alive():
            logging.warning(
                "Batch prefetch thread still busy %.0f s after close", JOIN_TIMEOUT_S
            )


def iterate_train_batches(
    arrays: Mapping,
    indices,
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    class_balanced: bool = False,
    labels=None,
    prefetch: int = 2,
    transform: Callable[[dict], dict] | None = None,
) -> Iterator[dict]:
    """Endless training batches, batch ``start_step`` first.

    Args:
      arrays: column name -> array-like over all flows (first axis: flow index).
      indices: the flow indices of the training split.
      batch_size: flows per batch.
      seed: fixes the order; batch k is the same for any ``start_step`` <= k.
      start_step: the first batch to yield (resume from a checkpoint).
      class_balanced: draw each row's class uniformly (needs ``labels``).
      labels: array-like of int class per flow (over all flows, like ``arrays``);
        when given, each batch carries it as ``label`` (int32).
      prefetch: batches prepared ahead on a background thread (0: none).
      transform: applied to each batch where it is prepared (on the prefetch
        thread), e.g. a put onto the devices so the copy overlaps the step.

    Yields:
      dicts of numpy arrays with a leading axis of ``batch_size``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    members = None
    if class_balanced:
        if labels is None:
            raise ValueError("class_balanced=True needs labels")
        members = class_members(_take(labels, indices))

    def generate():
        step = start_step
        while True:
            positions = train_batch_indices(
                indices.size,
                batch_size,
                step,
                seed=seed,
                members=members,
            )
            batch = _gather(arrays, indices[positions], labels)
            yield transform(batch) if transform else batch
            step += 1

    if prefetch > 0:
        return _prefetch(generate(), prefetch)
    return generate()


def iterate_eval_batches(
    arrays: Mapping, indices, batch_size: int, *, labels=None, prefetch: int = 2
) -> Iterator[dict]:
    """Batches covering ``indices`` once, in order; the last is padded.

    Each batch has ``batch_size`` rows, a ``mask`` (bool, False on padding rows)
    and ``flow_index`` (int64, the flow of each row; padding rows repeat the
    batch's first flow). With ``labels``, each batch carries ``label`` too.
    """
    indices = np.asarray(indices, dtype=np.int64)

    def generate():
        for start in range(0, indices.size, batch_size):
            flow_indices = indices[start : start + batch_size]
            real = flow_indices.size
            padded = np.concatenate(
                [flow_indices, np.full(batch_size - real, flow_indices[0], np.int64)]
            )
            batch = _gather(arrays, padded, labels)
            batch["mask"] = np.arange(batch_size) < real
            batch["flow_index"] = padded
            yield batch

    if prefetch > 0:
        return _prefetch(generate(), prefetch)
    return generate()
