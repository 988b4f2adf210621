"""Training batches depend only on (seed, step); eval batches count each flow once."""

import itertools

import numpy as np
import pytest

from stfe_jax.store.batches import (
    iterate_eval_batches,
    iterate_train_batches,
    train_batch_indices,
)


class IndexOnlyColumn:
    """An array-like that supports only ``column[int_array]``, like a sharded
    store column, and records how it was read."""

    def __init__(self, values):
        self.values = values
        self.reads = []

    def __getitem__(self, indices):
        assert isinstance(indices, np.ndarray) and indices.dtype.kind == "i"
        self.reads.append(indices.copy())
        return self.values[indices]


def make_arrays(m=50):
    flow = np.arange(m)
    return {
        "packets": IndexOnlyColumn(
            (flow[:, None, None] % 256).astype(np.uint8) * np.ones((1, 2, 3), np.uint8)
        ),
        "n_packets": IndexOnlyColumn(flow.astype(np.int32)),
    }


def take(iterator, count):
    return list(itertools.islice(iterator, count))


def test_train_order_depends_only_on_seed_and_step():
    arrays = make_arrays()
    indices = np.arange(3, 50)  # 47 training flows
    unbroken = take(iterate_train_batches(arrays, indices, 8, seed=7), 12)
    resumed = take(iterate_train_batches(arrays, indices, 8, seed=7, start_step=5), 7)
    for a, b in zip(unbroken[5:], resumed, strict=True):
        np.testing.assert_array_equal(a["n_packets"], b["n_packets"])
        np.testing.assert_array_equal(a["packets"], b["packets"])
    other_seed = take(iterate_train_batches(arrays, indices, 8, seed=8), 1)
    assert not np.array_equal(other_seed[0]["n_packets"], unbroken[0]["n_packets"])


def test_each_epoch_holds_every_training_flow_once():
    indices = np.arange(10, 40)  # 30 flows, batch 7: epochs cross batch edges
    positions = np.concatenate(
        [train_batch_indices(30, 7, step, seed=1) for step in range(9)]
    )
    for epoch in range(2):
        np.testing.assert_array_equal(
            np.sort(positions[30 * epoch : 30 * (epoch + 1)]), np.arange(30)
        )
    arrays = make_arrays()
    batch = take(iterate_train_batches(arrays, indices, 7, seed=1, prefetch=0), 1)[0]
    np.testing.assert_array_equal(batch["n_packets"], indices[positions[:7]])
    # Reads go to the column in ascending index order.
    read = arrays["n_packets"].reads[0]
    assert (np.diff(read) >= 0).all()


def test_class_balanced_batches_draw_classes_evenly():
    labels = np.zeros(1000, np.int32)
    labels[::20] = 1  # 5% attacks
    arrays = {"n_packets": np.arange(1000, dtype=np.int32)}
    batches = take(
        iterate_train_batches(
            arrays, np.arange(1000), 200, seed=0, class_balanced=True, labels=labels
        ),
        5,
    )
    drawn = np.concatenate([b["label"] for b in batches])
    assert 0.4 < drawn.mean() < 0.6
    flows = np.concatenate([b["n_packets"] for b in batches])
    np.testing.assert_array_equal(labels[flows], drawn)
    again = take(
        iterate_train_batches(
            arrays,
            np.arange(1000),
            200,
            seed=0,
            start_step=4,
            class_balanced=True,
            labels=labels,
        ),
        1,
    )
    np.testing.assert_array_equal(again[0]["n_packets"], batches[4]["n_packets"])
    with pytest.raises(ValueError, match="labels"):
        iterate_train_batches(arrays, np.arange(10), 4, seed=0, class_balanced=True)


def test_eval_batches_count_every_flow_once_and_mask_padding():
    arrays = make_arrays()
    labels = np.arange(50, dtype=np.int32) % 3
    indices = np.array([4, 9, 1, 33, 21, 8, 40, 12, 0, 49, 30])
    batches = list(iterate_eval_batches(arrays, indices, 4, labels=labels))
    assert len(batches) == 3
    assert all(b["n_packets"].shape == (4,) for b in batches)
    np.testing.assert_array_equal(batches[-1]["mask"], [True, True, True, False])
    real = np.concatenate([b["n_packets"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(real, indices)
    np.testing.assert_array_equal(
        np.concatenate([b["label"][b["mask"]] for b in batches]), labels[indices]
    )
    np.testing.assert_array_equal(
        np.concatenate([b["flow_index"][b["mask"]] for b in batches]), indices
    )


def test_prefetch_reraises_errors_and_stops_when_closed():
    class Broken:
        def __getitem__(self, indices):
            raise OSError("shard 3 unreadable")

    with pytest.raises(OSError, match="shard 3"):
        next(iterate_train_batches({"x": Broken()}, np.arange(5), 2, seed=0))

    batches = iterate_train_batches(make_arrays(), np.arange(50), 4, seed=0)
    first = next(batches)
    batches.close()  # must not hang
    assert first["n_packets"].shape == (4,)


def test_transform_runs_on_each_prepared_batch():
    arrays = make_arrays()
    seen = []

    def tag(batch):
        seen.append(int(batch["n_packets"][0]))
        return dict(batch, tagged=np.ones(1))

    batches = iterate_train_batches(arrays, np.arange(50), 4, seed=0, transform=tag)
    first = next(batches)
    batches.close()
    assert "tagged" in first
    assert seen[0] == int(first["n_packets"][0])
