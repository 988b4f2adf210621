"""Hand-made flow statistics and the random-forest baseline trained on them.

The baseline every reader asks for beside learned features: per-flow counts,
sizes, durations, TCP flags and inter-arrival times, computed from the flow
store's columns (``stfe_jax.flows.columns``) of the same flows the networks see,
and fed to a scikit-learn random forest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stfe_jax.evaluate import probes

# TCP header flag bits, as ORed into the ``tcp_flags_seen`` column.
TCP_FLAG_BITS = {
    "fin": 0x01,
    "syn": 0x02,
    "rst": 0x04,
    "psh": 0x08,
    "ack": 0x10,
    "urg": 0x20,
    "ece": 0x40,
    "cwr": 0x80,
}

# The statistics of each flow, in matrix column order. Whole-flow statistics come
# from the flow metadata; ``sample_*`` ones from the first ``n_packets`` (at most
# packets_per_flow) packets of the sample tensors.
FLOW_STATISTIC_COLUMNS: tuple[str, ...] = (
    "packet_count",  # all packets of the flow
    "byte_count",  # wire bytes of all packets
    "fwd_packet_count",  # initiator -> responder packets
    "bwd_packet_count",  # responder -> initiator packets
    "mean_packet_bytes",  # byte_count / packet_count (wire bytes)
    "duration_s",  # last packet time - first packet time, seconds
    "protocol",  # IP protocol number
    *(f"tcp_{flag}" for flag in TCP_FLAG_BITS),  # 1.0 if the flag was ever seen
    "sample_packets",  # packets in the sample (n_packets)
    "packet_caplen_mean",  # captured bytes from the IP header, over the sample
    "packet_caplen_std",
    "packet_caplen_min",
    "packet_caplen_max",
    "iat_s_mean",  # seconds between packets 2..n of the sample (0 if n < 2)
    "iat_s_std",
    "iat_s_max",
    "reverse_share",  # share of sample packets going responder -> initiator
)

REQUIRED_COLUMNS = (
    "n_packets",
    "start_ns",
    "end_ns",
    "protocol",
    "packet_count",
    "byte_count",
    "fwd_packet_count",
    "tcp_flags_seen",
    "packet_caplen",
    "direction",
    "iat_s",
)

BASELINE_NAME = "flow statistics + random forest"


def _column(arrays, name: str, indices: np.ndarray | None) -> np.ndarray:
    """One column of a mapping (store arrays, dict) or an object (FlowBatch)."""
    try:
        column = arrays[name] if hasattr(arrays, "keys") else getattr(arrays, name)
    except (KeyError, AttributeError):
        raise KeyError(
            f"flow arrays lack the column {name!r} that flow statistics need "
            f"(need {', '.join(REQUIRED_COLUMNS)})"
        ) from None
    return np.asarray(column if indices is None else column[indices])


def _masked_stats(values: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, std, min, max over the valid entries of each row (0 without any)."""
    count = valid.sum(axis=1)
    safe_count = np.maximum(count, 1)
    total = np.where(valid, values, 0.0).sum(axis=1)
    mean = total / safe_count
    square = np.where(valid, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
    has_any = count > 0
    return {
        "mean": mean,
        "std": np.sqrt(square / safe_count),
        "min": np.where(has_any, np.where(valid, values, np.inf).min(axis=1), 0.0),
        "max": np.where(has_any, np.where(valid, values, -np.inf).max(axis=1), 0.0),
    }


def flow_statistics(arrays, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The ``FLOW_STATISTIC_COLUMNS`` of flows, each a float64 array (k,).

    Args:
      arrays: flow columns by name (a dict, the store's ``arrays()``, or a
        ``FlowBatch``), holding at least ``REQUIRED_COLUMNS``.
      indices: int flow indices to compute (default: all flows).
    """
    n_packets = _column(arrays, "n_packets", indices).astype(np.int64)
    packet_count = _column(arrays, "packet_count", indices).astype(np.float64)
    byte_count = _column(arrays, "byte_count", indices).astype(np.float64)
    fwd = _column(arrays, "fwd_packet_count", indices).astype(np.float64)
    start_ns = _column(arrays, "start_ns", indices).astype(np.int64)
    end_ns = _column(arrays, "end_ns", indices).astype(np.int64)
    flags = _column(arrays, "tcp_flags_seen", indices).astype(np.int64)
    caplen = _column(arrays, "packet_caplen", indices).astype(np.float64)
    direction = _column(arrays, "direction", indices).astype(np.float64)
    iat_s = _column(arrays, "iat_s", indices).astype(np.float64)

    positions = np.arange(caplen.shape[1])[None, :]
    in_sample = positions < n_packets[:, None]
    has_gap = in_sample & (positions >= 1)  # the first packet has no predecessor
    caplen_stats = _masked_stats(caplen, in_sample)
    iat_stats = _masked_stats(iat_s, has_gap)
    sample_size = np.maximum(in_sample.sum(axis=1), 1)

    columns = {
        "packet_count": packet_count,
        "byte_count": byte_count,
        "fwd_packet_count": fwd,
        "bwd_packet_count": packet_count - fwd,
        "mean_packet_bytes": byte_count / np.maximum(packet_count, 1.0),
        "duration_s": (end_ns - start_ns).astype(np.float64) * 1e-9,
        "protocol": _column(arrays, "protocol", indices).astype(np.float64),
        **{
            f"tcp_{flag}": ((flags & bit) != 0).astype(np.float64)
            for flag, bit in TCP_FLAG_BITS.items()
        },
        "sample_packets": n_packets.astype(np.float64),
        **{f"packet_caplen_{k}": v for k, v in caplen_stats.items()},
        "iat_s_mean": iat_stats["mean"],
        "iat_s_std": iat_stats["std"],
        "iat_s_max": iat_stats["max"],
        "reverse_share": np.where(in_sample, direction, 0.0).sum(axis=1) / sample_size,
    }
    return columns


def flow_statistics_matrix(arrays, indices: np.ndarray | None = None) -> np.ndarray:
    """``flow_statistics`` as a float32 matrix (k, len(FLOW_STATISTIC_COLUMNS))."""
    columns = flow_statistics(arrays, indices)
    return np.stack(list(columns.values()), axis=1).astype(np.float32)


def flow_statistics_baseline(
    arrays,
    labels: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    class_names: Sequence[str],
    seed: int,
    *,
    normal_class: int = 0,
    max_train_flows: int | None = probes.MAX_PROBE_TRAIN_FLOWS,
    val_idx: np.ndarray | None = None,
) -> dict:
    """A random forest on the flow statistics of the training flows, scored on
    the test flows.

    Args:
      arrays: flow columns by name over all flows (see ``flow_statistics``).
      labels: int (m,), the class of every flow (indexed by the split indices).
      train_idx, test_idx: int flow indices of the training and test splits.
      class_names: C names in class-index order.
      seed: seed of the training sample and the forest.
      normal_class: index of the benign class.
      max_train_flows: fit on a seeded sample of at most this many training flows.
      val_idx: optional int flow indices of the validation split, on which the
        anomaly-score threshold is chosen (see ``probes.fit_and_evaluate``);
        without, the forest predicts its most probable class.

    Returns:
      The entry of ``probes.fit_and_evaluate`` named ``BASELINE_NAME``, with
      ``columns`` (the statistics used) and ``feature_importances`` (column ->
      the forest's impurity importance).
    """
    labels = np.asarray(labels)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    test_idx = np.asarray(test_idx, dtype=np.int64)
    sampled = train_idx[probes.training_sample(train_idx.size, max_train_flows, seed)]
    if val_idx is not None:
        val_idx = np.asarray(val_idx, dtype=np.int64)
    entry = probes.fit_and_evaluate(
        "random_forest",
        flow_statistics_matrix(arrays, sampled),
        labels[sampled],
        flow_statistics_matrix(arrays, test_idx),
        labels[test_idx],
        class_names,
        seed=seed,
        normal_class=normal_class,
        name=BASELINE_NAME,
        max_train_flows=None,
        feature_names=FLOW_STATISTIC_COLUMNS,
        val_x=None if val_idx is None else flow_statistics_matrix(arrays, val_idx),
        val_y=None if val_idx is None else labels[val_idx],
    )
    entry["n_train_total"] = int(train_idx.size)
    entry["columns"] = list(FLOW_STATISTIC_COLUMNS)
    return entry
