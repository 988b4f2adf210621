"""A small, separable toy dataset for tests, smoke runs and benchmarks.

Not traffic: random bytes in which the class is written at one byte offset of
every real packet (the IPv4 protocol field's offset, 9), with random caplens,
directions, inter-arrival times and packet counts around it.
"""

import numpy as np

from stfe_jax.train.dataset import Dataset

CLASS_BYTES = (17, 6, 1)  # the value at offset 9 for class 0, 1, 2


def toy_dataset(
    num_flows: int = 600,
    packets_per_flow: int = 4,
    bytes_per_packet: int = 32,
    *,
    num_classes: int = 2,
    attack_share: float = 0.5,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> Dataset:
    """``num_flows`` flows whose class (0 "benign", then "attack_1", ...) sets byte
    9 of each real packet; a share ``attack_share`` of flows is not benign."""
    if not 2 <= num_classes <= len(CLASS_BYTES):
        raise ValueError(f"num_classes must lie in [2, {len(CLASS_BYTES)}]")
    if bytes_per_packet < 10:
        raise ValueError("bytes_per_packet must be at least 10 (class at offset 9)")
    rng = np.random.default_rng(seed)
    shape = (num_flows, packets_per_flow)
    attack = rng.random(num_flows) < attack_share
    labels = np.where(attack, rng.integers(1, num_classes, num_flows), 0)
    labels = labels.astype(np.int32)

    packets = rng.integers(0, 256, shape + (bytes_per_packet,), dtype=np.uint8)
    packets[:, :, 9] = np.asarray(CLASS_BYTES, np.uint8)[labels][:, None]
    caplen = rng.integers(10, bytes_per_packet + 1, shape).astype(np.uint16)
    arrays = {
        "packets": packets,
        "packet_caplen": caplen,
        "direction": rng.integers(0, 2, shape).astype(np.uint8),
        "iat_s": rng.exponential(0.1, shape).astype(np.float32),
        "n_packets": rng.integers(1, packets_per_flow + 1, num_flows).astype(np.int32),
    }
    order = rng.permutation(num_flows)
    n_train = int(round(fractions[0] * num_flows))
    n_val = int(round(fractions[1] * num_flows))
    return Dataset(
        arrays=arrays,
        labels=labels,
        class_names=["benign"] + [f"attack_{c}" for c in range(1, num_classes)],
        train_idx=np.sort(order[:n_train]),
        val_idx=np.sort(order[n_train : n_train + n_val]),
        test_idx=np.sort(order[n_train + n_val :]),
    )
