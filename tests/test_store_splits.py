"""Splits: every policy keeps flows (and, by capture, whole captures) on one side,
is reproducible from its seed, and the duplicate share counts identical tensors."""

from __future__ import annotations

import numpy as np
import pytest
from test_flows_support import tcp_session, udp_frame

from stfe_jax.store import build_store
from stfe_jax.store.splits import (
    TEST,
    TRAIN,
    UNASSIGNED,
    VAL,
    assign_split,
    duplicate_share,
    resolve_policy,
)
from stfe_jax.synth.writers import write_pcap

RNG = np.random.default_rng(7)
N = 5000
START = np.sort(RNG.integers(0, 10**12, N))
CAPTURE = RNG.integers(0, 12, N)


@pytest.mark.parametrize("policy", ["random", "time", "capture"])
def test_split_is_reproducible_and_seed_dependent(policy):
    a = assign_split(START, CAPTURE, policy=policy, seed=3)
    b = assign_split(START, CAPTURE, policy=policy, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int8
    assert set(np.unique(a).tolist()) == {TRAIN, VAL, TEST}
    if policy != "time":
        c = assign_split(START, CAPTURE, policy=policy, seed=4)
        assert (a != c).any()


def test_random_split_follows_the_fractions():
    split = assign_split(START, CAPTURE, policy="random", fractions=(0.6, 0.1, 0.3))
    assert np.bincount(split).tolist() == [3000, 500, 1500]


def test_time_split_puts_earlier_flows_in_train_and_later_in_test():
    shuffled = RNG.permutation(N)
    split = assign_split(START[shuffled], CAPTURE, policy="time")
    start = START[shuffled]
    assert start[split == TRAIN].max() <= start[split == VAL].min()
    assert start[split == VAL].max() <= start[split == TEST].min()
    assert np.bincount(split).tolist() == [3500, 500, 1000]


def test_capture_split_never_puts_one_capture_on_two_sides():
    for seed in range(5):
        split = assign_split(START, CAPTURE, policy="capture", seed=seed)
        sides = {int(c): set(split[CAPTURE == c].tolist()) for c in np.unique(CAPTURE)}
        assert all(len(s) == 1 for s in sides.values()), sides
        counts = np.bincount(split, minlength=3)
        assert (counts > 0).all()
        assert abs(counts[TRAIN] / N - 0.7) < 0.15


def test_capture_split_gives_each_side_a_capture_even_when_sizes_are_skewed():
    capture = np.repeat([0, 1, 2], [7833, 3978, 401])
    split = assign_split(np.arange(capture.size), capture, policy="capture")
    assert sorted(int(split[capture == c][0]) for c in range(3)) == [0, 1, 2]
    assert split[capture == 0][0] == TRAIN


def test_fractions_below_one_leave_flows_unassigned():
    split = assign_split(START, CAPTURE, policy="random", fractions=(0.5, 0.1, 0.2))
    assert (split == UNASSIGNED).sum() == 1000


def test_auto_policy_is_capture_for_several_captures_else_time():
    assert resolve_policy("auto", CAPTURE) == "capture"
    assert resolve_policy("auto", np.zeros(N)) == "time"
    one = assign_split(START, np.zeros(N), policy="auto")
    np.testing.assert_array_equal(one, assign_split(START, np.zeros(N), policy="time"))
    with pytest.raises(ValueError, match="split policy"):
        resolve_policy("by_host", CAPTURE)


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="fractions"):
        assign_split(START, CAPTURE, fractions=(0.8, 0.2, 0.2))


def test_duplicate_share_counts_byte_identical_test_tensors():
    rows = RNG.integers(0, 256, (20, 4, 10), dtype=np.uint8)
    rows[12] = rows[3]  # test row 12 equals train row 3
    rows[15] = rows[0]
    rows[16] = rows[0]
    rows[17] = rows[3]
    rows[17, 3, 9] ^= 1  # one byte off: not a duplicate
    train, test = np.arange(10), np.arange(10, 20)
    assert duplicate_share(rows, train, test) == pytest.approx(0.3)
    assert duplicate_share(rows, train, np.array([], dtype=np.int64)) == 0.0


def test_no_flow_and_no_capture_on_two_sides_of_a_store_split(tmp_path):
    paths = []
    for c in range(4):
        records = []
        for k in range(5):
            t = 1_600_000_000 * 10**9 + (c * 100 + k) * 10**9
            records += tcp_session(f"10.0.{c}.{k + 1}", "192.0.2.1", 40000 + k, 80, t)
            records.append((t + 10, udp_frame(f"10.0.{c}.{k + 1}", "192.0.2.9", 9, 53)))
        # The same time-server query in every capture: identical tensors.
        ntp = udp_frame("10.9.9.9", "192.0.2.123", 123, 123, b"ntp")
        records.append((1_600_000_000 * 10**9 + c * 100 * 10**9, ntp))
        records.sort(key=lambda r: r[0])
        paths.append(tmp_path / f"c{c}.pcap")
        write_pcap(paths[-1], records)
    store = build_store(paths, tmp_path / "store", {})
    start = store.column("start_ns")[:]
    capture = store.column("capture_index")[:]
    split = assign_split(start, capture, policy="auto", seed=1)
    store.write_side_array("split", split)
    split = store.read_side_array("split")

    train, test = np.flatnonzero(split == TRAIN), np.flatnonzero(split == TEST)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert set(capture[train].tolist()).isdisjoint(capture[split != TRAIN].tolist())
    assert set(capture[test].tolist()).isdisjoint(capture[split != TEST].tolist())
    # Each flow's identity (capture, initiator address and port, start) is unique.
    keys = {
        (int(c), bytes(a), int(p), int(s))
        for c, a, p, s in zip(
            capture,
            store.column("src_addr")[:],
            store.column("src_port")[:],
            start,
            strict=True,
        )
    }
    assert len(keys) == store.num_flows == 44
    # The share of test tensors seen in training, against a brute-force count.
    packets = store.column("packets")[:]
    seen = {packets[i].tobytes() for i in train}
    expected = np.mean([packets[i].tobytes() in seen for i in test])
    assert expected > 0
    assert duplicate_share(store.column("packets"), train, test) == expected
