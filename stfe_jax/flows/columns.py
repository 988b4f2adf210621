"""Per-flow columns: the sample tensors and flow metadata the flow cutter produces.

A ``FlowBatch`` holds, for each of ``m`` flows, the first ``packets_per_flow``
packets cut or zero-padded to ``bytes_per_packet`` bytes from the network header on,
their side channels (captured length, direction, inter-arrival time), and the flow's
metadata (5-tuple, times, counts, source capture). The store writes these columns
to memory-mapped arrays under the same names.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Per-packet sample columns: name -> dtype. Shape (m, packets_per_flow[, bytes]).
SAMPLE_COLUMNS: dict[str, np.dtype] = {
    "packets": np.dtype(np.uint8),  # (m, P, B) bytes from the IP header on
    "packet_caplen": np.dtype(np.uint16),  # (m, P) captured bytes from the IP header
    "direction": np.dtype(np.uint8),  # (m, P) 0 initiator->responder, 1 reverse
    "iat_s": np.dtype(np.float32),  # (m, P) seconds since the flow's previous packet
}

# Per-flow metadata columns: name -> (dtype, trailing shape).
FLOW_COLUMNS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "n_packets": (np.dtype(np.int32), ()),  # packets in the sample, <= P
    "start_ns": (np.dtype(np.int64), ()),  # first packet, ns since the epoch
    "end_ns": (np.dtype(np.int64), ()),  # last packet, ns since the epoch
    "protocol": (np.dtype(np.uint8), ()),
    "src_addr": (np.dtype(np.uint8), (16,)),  # initiator (first packet's source)
    "dst_addr": (np.dtype(np.uint8), (16,)),
    "src_port": (np.dtype(np.uint16), ()),
    "dst_port": (np.dtype(np.uint16), ()),
    "ip_version": (np.dtype(np.uint8), ()),
    "packet_count": (np.dtype(np.int64), ()),  # all packets of the flow
    "byte_count": (np.dtype(np.int64), ()),  # wire bytes of all packets
    "fwd_packet_count": (np.dtype(np.int64), ()),  # initiator->responder packets
    "tcp_flags_seen": (np.dtype(np.uint8), ()),  # OR of the TCP flags of all packets
    "capture_index": (np.dtype(np.int32), ()),  # index into the store's captures
}


@dataclasses.dataclass
class FlowBatch:
    """Sample tensors and metadata of consecutive flows of one capture.

    Attributes are the names of ``SAMPLE_COLUMNS`` and ``FLOW_COLUMNS``; see there
    for dtypes and shapes. Within a batch, flows are in the order they ended
    (timed out, closed, or were flushed at the end of the capture).
    """

    packets: np.ndarray
    packet_caplen: np.ndarray
    direction: np.ndarray
    iat_s: np.ndarray
    n_packets: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    protocol: np.ndarray
    src_addr: np.ndarray
    dst_addr: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    ip_version: np.ndarray
    packet_count: np.ndarray
    byte_count: np.ndarray
    fwd_packet_count: np.ndarray
    tcp_flags_seen: np.ndarray
    capture_index: np.ndarray

    def __len__(self) -> int:
        return int(self.n_packets.shape[0])
