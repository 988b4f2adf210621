"""Tests of stfe_jax.evaluate.flow_statistics on hand-built flows."""

import numpy as np
import pytest

from stfe_jax.evaluate import flow_statistics as fs
from stfe_jax.flows.columns import FLOW_COLUMNS, SAMPLE_COLUMNS, FlowBatch

PAD = 99  # garbage in padded packet slots: must never reach a statistic


def _hand_built_flows():
    """Flow 0: TCP, 5 packets (3 sampled), SYN+ACK; flow 1: one UDP packet."""
    return {
        "n_packets": np.array([3, 1], np.int32),
        "start_ns": np.array([1_000_000_000, 7_000_000_000], np.int64),
        "end_ns": np.array([3_500_000_000, 7_000_000_000], np.int64),
        "protocol": np.array([6, 17], np.uint8),
        "packet_count": np.array([5, 1], np.int64),
        "byte_count": np.array([700, 80], np.int64),
        "fwd_packet_count": np.array([3, 1], np.int64),
        "tcp_flags_seen": np.array([0x12, 0], np.uint8),
        "packet_caplen": np.array([[60, 52, 40, PAD], [28, PAD, PAD, PAD]], np.uint16),
        "direction": np.array([[0, 1, 0, 1], [0, 1, 1, 1]], np.uint8),
        "iat_s": np.array([[0, 0.5, 1.5, PAD], [0, PAD, PAD, PAD]], np.float32),
    }


def test_columns_and_values_of_hand_built_flows():
    stats = fs.flow_statistics(_hand_built_flows())
    assert tuple(stats) == fs.FLOW_STATISTIC_COLUMNS
    expected = {
        "packet_count": [5, 1],
        "byte_count": [700, 80],
        "fwd_packet_count": [3, 1],
        "bwd_packet_count": [2, 0],
        "mean_packet_bytes": [140, 80],
        "duration_s": [2.5, 0.0],
        "protocol": [6, 17],
        "tcp_fin": [0, 0],
        "tcp_syn": [1, 0],
        "tcp_rst": [0, 0],
        "tcp_psh": [0, 0],
        "tcp_ack": [1, 0],
        "tcp_urg": [0, 0],
        "tcp_ece": [0, 0],
        "tcp_cwr": [0, 0],
        "sample_packets": [3, 1],
        "packet_caplen_mean": [152 / 3, 28],
        "packet_caplen_std": [np.std([60, 52, 40]), 0],
        "packet_caplen_min": [40, 28],
        "packet_caplen_max": [60, 28],
        "iat_s_mean": [1.0, 0],
        "iat_s_std": [0.5, 0],
        "iat_s_max": [1.5, 0],
        "reverse_share": [1 / 3, 0],
    }
    assert set(expected) == set(fs.FLOW_STATISTIC_COLUMNS)
    for name, values in expected.items():
        np.testing.assert_allclose(stats[name], values, rtol=1e-6, err_msg=name)


def test_indices_matrix_and_flow_batch_input():
    arrays = _hand_built_flows()
    matrix = fs.flow_statistics_matrix(arrays, np.array([1, 0]))
    assert matrix.shape == (2, len(fs.FLOW_STATISTIC_COLUMNS))
    assert matrix.dtype == np.float32
    column = fs.FLOW_STATISTIC_COLUMNS.index("byte_count")
    assert matrix[:, column].tolist() == [80.0, 700.0]

    fields = {}
    for name, dtype in SAMPLE_COLUMNS.items():
        fields[name] = arrays.get(name, np.zeros((2, 4, 8), dtype))
    for name, (dtype, tail) in FLOW_COLUMNS.items():
        fields[name] = arrays.get(name, np.zeros((2, *tail), dtype))
    batch = FlowBatch(**fields)
    np.testing.assert_array_equal(
        fs.flow_statistics_matrix(batch), fs.flow_statistics_matrix(arrays)
    )


def test_missing_column_is_named():
    arrays = _hand_built_flows()
    del arrays["iat_s"]
    with pytest.raises(KeyError, match="'iat_s'"):
        fs.flow_statistics(arrays)


def _toy_store(n, seed):
    """Benign flows: long, ACK; attack flows (class 1): one SYN packet, short."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    attack = labels == 1
    packets = np.where(attack, 1, rng.integers(3, 40, n))
    n_sample = np.minimum(packets, 8)
    start = rng.integers(0, 10**12, n)
    return labels, {
        "n_packets": n_sample.astype(np.int32),
        "start_ns": start,
        "end_ns": start + np.where(attack, 0, rng.integers(10**6, 10**10, n)),
        "protocol": np.full(n, 6, np.uint8),
        "packet_count": packets,
        "byte_count": packets * rng.integers(40, 1500, n),
        "fwd_packet_count": np.maximum(packets // 2, 1),
        "tcp_flags_seen": np.where(attack, 0x02, 0x18).astype(np.uint8),
        "packet_caplen": rng.integers(40, 100, (n, 8)).astype(np.uint16),
        "direction": rng.integers(0, 2, (n, 8)).astype(np.uint8),
        "iat_s": rng.random((n, 8)).astype(np.float32),
    }


def test_baseline_random_forest_on_statistics():
    labels, arrays = _toy_store(600, seed=0)
    order = np.random.default_rng(1).permutation(600)
    train_idx, test_idx = order[:400], order[400:]
    entry = fs.flow_statistics_baseline(
        arrays, labels, train_idx, test_idx, ["benign", "anomalous"], seed=0
    )

    assert entry["name"] == fs.BASELINE_NAME
    assert entry["columns"] == list(fs.FLOW_STATISTIC_COLUMNS)
    assert entry["n_train"] == 400 and entry["n_test"] == 200
    m = entry["metrics"]
    assert m["n_flows"] == 200
    assert m["accuracy"] > 0.97
    assert m["confusion_matrix"][1][1] + m["confusion_matrix"][1][0] == int(
        labels[test_idx].sum()
    )
    assert set(entry["feature_importances"]) == set(fs.FLOW_STATISTIC_COLUMNS)
    assert sum(entry["feature_importances"].values()) == pytest.approx(1.0)


def test_baseline_samples_training_flows():
    labels, arrays = _toy_store(300, seed=2)
    entry = fs.flow_statistics_baseline(
        arrays,
        labels,
        np.arange(200),
        np.arange(200, 300),
        ["benign", "anomalous"],
        seed=0,
        max_train_flows=50,
    )
    assert entry["n_train"] == 50 and entry["n_train_total"] == 200


def test_baseline_threshold_on_validation_flows():
    labels, arrays = _toy_store(400, seed=3)
    entry = fs.flow_statistics_baseline(
        arrays,
        labels,
        np.arange(250),
        np.arange(300, 400),
        ["benign", "anomalous"],
        seed=0,
        val_idx=np.arange(250, 300),
    )
    assert entry["n_val"] == 50
    assert entry["operating_point"]["n_flows"] == 50
    assert entry["metrics"]["threshold"] == entry["operating_point"]["threshold"]
