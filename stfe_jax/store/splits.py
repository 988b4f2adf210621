"""Train/validation/test splits of a store's flows, and a leakage measure.

Every policy assigns whole flows; ``capture`` also keeps every capture file on one
side, so a model cannot score by recognising a file's hosts or timing. The result
depends only on the flows' start times, capture indices, the policy, the fractions
and the seed, so it is the same on every run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRAIN, VAL, TEST, UNASSIGNED = 0, 1, 2, -1
SPLIT_NAMES = {TRAIN: "train", VAL: "val", TEST: "test"}
POLICIES = ("auto", "random", "time", "capture")
_HASH_ROWS_CHUNK = 65536


def resolve_policy(policy: str, capture_index: np.ndarray) -> str:
    """The policy ``auto`` stands for: ``capture`` with several captures, else
    ``time``; other policies are returned as they are."""
    if policy not in POLICIES:
        raise ValueError(f"split policy {policy!r}: expected one of {POLICIES}")
    if policy != "auto":
        return policy
    return "capture" if np.unique(capture_index).size > 1 else "time"


def assign_split(
    start_ns: np.ndarray,
    capture_index: np.ndarray,
    *,
    policy: str = "auto",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
) -> np.ndarray:
    """The split of every flow: 0 train, 1 validation, 2 test, -1 unassigned.

    Args:
      start_ns: each flow's first packet time, ns since the epoch.
      capture_index: each flow's capture.
      policy: ``random`` (flows drawn at random), ``time`` (the earliest flows
        train, then validation, the latest test), ``capture`` (whole captures on
        one side, drawn at random, sized by their flow counts), or ``auto``
        (``capture`` when there are several captures, else ``time``).
      seed: the random draw of ``random`` and ``capture``.
      fractions: shares of flows for train, validation and test; when they sum to
        less than 1 the rest stays unassigned (-1).

    Returns:
      int8 array, one entry per flow.
    """
    start_ns = np.asarray(start_ns, dtype=np.int64)
    capture_index = np.asarray(capture_index, dtype=np.int64)
    if start_ns.shape != capture_index.shape or start_ns.ndim != 1:
        raise ValueError(
            f"start_ns {start_ns.shape} and capture_index {capture_index.shape} "
            "must be 1-D of one length"
        )
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or fractions.sum() > 1 + 1e-9:
        raise ValueError(
            f"split fractions {fractions.tolist()}: need three shares >= 0 summing "
            "to at most 1"
        )
    n = start_ns.size
    split = np.full(n, UNASSIGNED, dtype=np.int8)
    if n == 0:
        return split
    policy = resolve_policy(policy, capture_index)
    rng = np.random.default_rng(seed)

    if policy == "capture":
        return _split_captures(capture_index, fractions, rng)
    if policy == "random":
        order = rng.permutation(n)
    else:  # time; ties broken by capture and position, so the order is total
        order = np.lexsort((np.arange(n), capture_index, start_ns))
    bounds = np.round(np.cumsum(fractions) * n).astype(np.int64)
    lo = 0
    for side, hi in zip((TRAIN, VAL, TEST), bounds, strict=True):
        split[order[lo:hi]] = side
        lo = hi
    return split


def _split_captures(
    capture_index: np.ndarray, fractions: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Whole captures to sides. Captures are taken in a seeded random order and
    each goes to the side furthest below its target flow count; then every side
    with a non-zero share that got no capture takes the smallest capture of the
    side with the most captures (when that side has more than one)."""
    captures, inverse, counts = np.unique(
        capture_index, return_inverse=True, return_counts=True
    )
    targets = np.concatenate([fractions, [max(0.0, 1.0 - fractions.sum())]])
    targets = targets * counts.sum()
    assigned = np.zeros(4)
    side_of_capture = np.empty(captures.size, dtype=np.int64)
    for c in rng.permutation(captures.size):
        side = int(np.argmax(targets - assigned))
        side_of_capture[c] = side
        assigned[side] += counts[c]

    for side in (TEST, VAL, TRAIN):
        if fractions[side] == 0 or (side_of_capture == side).any():
            continue
        per_side = np.bincount(side_of_capture, minlength=4)
        donor = int(np.argmax(per_side))
        if per_side[donor] > 1:
            members = np.flatnonzero(side_of_capture == donor)
            side_of_capture[members[np.argmin(counts[members])]] = side

    # Side 3 is the unassigned rest (fractions summing to less than 1).
    side_of_capture = np.where(side_of_capture == 3, UNASSIGNED, side_of_capture)
    return side_of_capture[inverse].astype(np.int8)


def row_hashes(rows) -> np.ndarray:
    """A 64-bit hash of every row's bytes (``rows``: an array-like of shape
    (n, ...), read in chunks)."""
    n = len(rows)
    out = np.empty(n, dtype=np.uint64)
    for lo in range(0, n, _HASH_ROWS_CHUNK):
        chunk = np.ascontiguousarray(rows[lo : lo + _HASH_ROWS_CHUNK])
        flat = chunk.reshape(chunk.shape[0], -1).view(np.uint8)
        pad = -flat.shape[1] % 8
        if pad:
            flat = np.concatenate(
                [flat, np.zeros((flat.shape[0], pad), np.uint8)], axis=1
            )
        words = flat.view(np.uint64)
        h = np.full(words.shape[0], 0xCBF29CE484222325, dtype=np.uint64)
        for j in range(words.shape[1]):
            h ^= words[:, j]
            h *= np.uint64(0x100000001B3)
            h ^= h >> np.uint64(31)
        out[lo : lo + chunk.shape[0]] = h
    return out


def duplicate_share(packets_column, train_idx, test_idx) -> float:
    """Share of test tensors byte-identical to some training tensor.

    Rows are matched by a 64-bit hash, and every hash match is confirmed by
    comparing the bytes, so the share is exact.

    Args:
      packets_column: the store's ``packets`` column (or any array-like of rows).
      train_idx, test_idx: flow indices of the two sides.

    Returns:
      Duplicated test rows / test rows (0.0 when there are no test rows).
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    if test_idx.size == 0:
        return 0.0
    if train_idx.size == 0:
        return 0.0
    train_hash = _hashes_at(packets_column, train_idx)
    test_hash = _hashes_at(packets_column, test_idx)
    order = np.argsort(train_hash, kind="stable")
    sorted_hash = train_hash[order]
    pos = np.searchsorted(sorted_hash, test_hash)
    pos_clipped = np.minimum(pos, sorted_hash.size - 1)
    candidate = np.flatnonzero(sorted_hash[pos_clipped] == test_hash)

    # Confirm the hash matches byte by byte, in bulk against the first train row
    # of the same hash, then one by one for the (rare) rows that differ there.
    duplicates = 0
    for lo in range(0, candidate.size, _HASH_ROWS_CHUNK):
        chunk = candidate[lo : lo + _HASH_ROWS_CHUNK]
        test_rows = np.asarray(packets_column[test_idx[chunk]])
        train_rows = np.asarray(packets_column[train_idx[order[pos_clipped[chunk]]]])
        same = (test_rows == train_rows).reshape(chunk.size, -1).all(axis=1)
        duplicates += int(same.sum())
        for t, row in zip(chunk[~same], test_rows[~same], strict=True):
            j = pos_clipped[t] + 1
            while j < sorted_hash.size and sorted_hash[j] == test_hash[t]:
                other = np.asarray(packets_column[train_idx[order[j : j + 1]]])[0]
                if np.array_equal(row, other):
                    duplicates += 1
                    break
                j += 1
    return duplicates / test_idx.size


def _hashes_at(column, index: np.ndarray) -> np.ndarray:
    out = np.empty(index.size, dtype=np.uint64)
    for lo in range(0, index.size, _HASH_ROWS_CHUNK):
        out[lo : lo + _HASH_ROWS_CHUNK] = row_hashes(
            np.asarray(column[index[lo : lo + _HASH_ROWS_CHUNK]])
        )
    return out
