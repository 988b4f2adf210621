"""Header fields of many generated packets, and their Ethernet frames built at once.

A generated capture is first a ``PacketTable``: one numpy column per header field
(timestamps, addresses, ports, flags, lengths). ``build_frames`` turns the table into
the bytes a MAWI-style capture keeps of each packet: Ethernet, IPv4 or IPv6, and the
transport header (TCP with its options, UDP, ICMP or ICMPv6), with no payload. The
IPv4 header checksum is exact; TCP checksums are exact for segments without payload;
other transport checksums cover payload bytes that are not kept, so they are drawn
at random, as they look in a header-only trace.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stfe_jax.synth import packets

# Column name -> (dtype, trailing shape).
TABLE_COLUMNS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "ts_ns": (np.dtype(np.int64), ()),
    "ip_version": (np.dtype(np.uint8), ()),
    "src_addr": (np.dtype(np.uint8), (16,)),
    "dst_addr": (np.dtype(np.uint8), (16,)),
    "protocol": (np.dtype(np.uint8), ()),
    "src_port": (np.dtype(np.uint16), ()),
    "dst_port": (np.dtype(np.uint16), ()),
    "tcp_flags": (np.dtype(np.uint8), ()),
    "tcp_seq": (np.dtype(np.uint32), ()),
    "tcp_ack": (np.dtype(np.uint32), ()),
    "tcp_window": (np.dtype(np.uint16), ()),
    "tcp_options": (np.dtype(np.uint8), ()),
    "tcp_tsval": (np.dtype(np.uint32), ()),
    "tcp_tsecr": (np.dtype(np.uint32), ()),
    "icmp_type": (np.dtype(np.uint8), ()),
    "icmp_code": (np.dtype(np.uint8), ()),
    "icmp_id": (np.dtype(np.uint16), ()),
    "icmp_seq": (np.dtype(np.uint16), ()),
    "ttl": (np.dtype(np.uint8), ()),
    "ip_id": (np.dtype(np.uint16), ()),
    "dont_fragment": (np.dtype(np.bool_), ()),
    "flow_label": (np.dtype(np.uint32), ()),
    "ip_length": (np.dtype(np.uint16), ()),
    "outbound": (np.dtype(np.bool_), ()),
    "anomaly": (np.dtype(np.int16), ()),
}

# tcp_options values: which options a TCP header carries.
TCP_OPTIONS_NONE = 0
TCP_OPTIONS_SYN = 1  # MSS, SACK permitted, timestamps, NOP, window scale: 20 bytes
TCP_OPTIONS_TIMESTAMPS = 2  # NOP, NOP, timestamps: 12 bytes
TCP_OPTIONS_LEN = np.array([0, 20, 12], dtype=np.int64)

# The two router interfaces of the monitored link: frames leaving the "inside" network
# go from the first MAC to the second, frames entering go the other way.
LINK_MACS = (
    np.frombuffer(packets.mac_bytes("00:1b:54:c2:7e:01"), dtype=np.uint8),
    np.frombuffer(packets.mac_bytes("00:0e:39:a4:11:c0"), dtype=np.uint8),
)

ETHERNET_MIN_FRAME = 60  # bytes on the wire without FCS; shorter frames are padded


@dataclasses.dataclass
class PacketTable:
    """Header fields of generated packets, one entry per packet (struct of arrays).

    Attributes mirror ``TABLE_COLUMNS``: ``ts_ns`` nanoseconds since the Unix epoch;
    ``src_addr``/``dst_addr`` 16 bytes each, IPv4 as IPv4-mapped IPv6
    (``::ffff:a.b.c.d``); ``ip_length`` the IP packet's length on the wire in bytes
    (header plus the payload that is not kept); ``tcp_options`` one of the
    ``TCP_OPTIONS_*`` values; ``outbound`` which way the frame crosses the link
    (chooses the MAC pair); ``anomaly`` the index of the injected anomaly the packet
    belongs to, -1 for background traffic.
    """

    ts_ns: np.ndarray
    ip_version: np.ndarray
    src_addr: np.ndarray
    dst_addr: np.ndarray
    protocol: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    tcp_flags: np.ndarray
    tcp_seq: np.ndarray
    tcp_ack: np.ndarray
    tcp_window: np.ndarray
    tcp_options: np.ndarray
    tcp_tsval: np.ndarray
    tcp_tsecr: np.ndarray
    icmp_type: np.ndarray
    icmp_code: np.ndarray
    icmp_id: np.ndarray
    icmp_seq: np.ndarray
    ttl: np.ndarray
    ip_id: np.ndarray
    dont_fragment: np.ndarray
    flow_label: np.ndarray
    ip_length: np.ndarray
    outbound: np.ndarray
    anomaly: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)

    @classmethod
    def make(cls, count: int, **columns) -> PacketTable:
        """A table of ``count`` packets: given columns broadcast, the rest zero."""
        unknown = set(columns) - set(TABLE_COLUMNS)
        if unknown:
            raise ValueError(f"unknown packet table columns: {sorted(unknown)}")
        values = {}
        for name, (dtype, shape) in TABLE_COLUMNS.items():
            column = np.zeros((count, *shape), dtype=dtype)
            if name == "anomaly":
                column[:] = -1
            if name in columns:
                column[:] = columns[name]
            values[name] = column
        return cls(**values)

    @classmethod
    def concatenate(cls, tables: list[PacketTable]) -> PacketTable:
        """The packets of all ``tables`` in one table, in the order given."""
        return cls(
            **{
                name: np.concatenate([getattr(table, name) for table in tables])
                for name in TABLE_COLUMNS
            }
        )

    def take(self, index: np.ndarray) -> PacketTable:
        """The packets at ``index`` (an integer or boolean array), in that order."""
        return PacketTable(
            **{name: getattr(self, name)[index] for name in TABLE_COLUMNS}
        )


def _put16(frames: np.ndarray, rows: np.ndarray, col: int, values) -> None:
    """Write big-endian 16-bit ``values`` at byte ``col`` of ``rows``."""
    values = np.asarray(values, dtype=np.uint32)
    frames[rows, col] = (values >> 8) & 0xFF
    frames[rows, col + 1] = values & 0xFF


def _put32(frames: np.ndarray, rows: np.ndarray, col: int, values) -> None:
    """Write big-endian 32-bit ``values`` at byte ``col`` of ``rows``."""
    values = np.asarray(values, dtype=np.uint32)
    for index in range(4):
        frames[rows, col + index] = (values >> (24 - 8 * index)) & 0xFF


def _ones_complement_sum(words_bytes: np.ndarray) -> np.ndarray:
    """Per row, the ones'-complement sum (folded to 16 bits) of big-endian words."""
    data = words_bytes.astype(np.uint32)
    total = (data[:, 0::2] << 8).sum(axis=1) + data[:, 1::2].sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total


def build_frames(
    table: PacketTable, rng: np.random.Generator, *, width: int = 96
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept bytes of every packet of ``table``.

    Args:
      table: the packets' header fields.
      rng: draws the checksums that cover payload bytes not kept.
      width: bytes per row of the result; at least the longest header chain
        (14 + 40 + 40 = 94 bytes).

    Returns:
      ``(frames, caplen, wirelen)``: (n, width) uint8 frames, the bytes kept of
      each (Ethernet to the end of the transport header) and the frame's length
      on the wire in bytes (at least 60, the Ethernet minimum without FCS).
    """
    count = len(table)
    frames = np.zeros((count, width), dtype=np.uint8)
    all_rows = np.arange(count)

    outbound = table.outbound
    frames[:, 0:6] = np.where(outbound[:, None], LINK_MACS[1], LINK_MACS[0])
    frames[:, 6:12] = np.where(outbound[:, None], LINK_MACS[0], LINK_MACS[1])
    is_v6 = table.ip_version == 6
    ethertype = np.where(is_v6, packets.ETHERTYPE_IPV6, packets.ETHERTYPE_IPV4)
    _put16(frames, all_rows, 12, ethertype)

    l4_offset = np.where(is_v6, 14 + 40, 14 + 20)
    v4 = np.flatnonzero(~is_v6)
    v6 = np.flatnonzero(is_v6)

    frames[v4, 14] = 0x45
    _put16(frames, v4, 16, table.ip_length[v4])
    _put16(frames, v4, 18, table.ip_id[v4])
    frames[v4, 20] = np.where(table.dont_fragment[v4], 0x40, 0)
    frames[v4, 22] = table.ttl[v4]
    frames[v4, 23] = table.protocol[v4]
    frames[v4, 26:30] = table.src_addr[v4, 12:16]
    frames[v4, 30:34] = table.dst_addr[v4, 12:16]
    _put16(frames, v4, 24, ~_ones_complement_sum(frames[v4, 14:34]) & 0xFFFF)

    flow_label = table.flow_label[v6]
    frames[v6, 14] = 0x60
    frames[v6, 15] = (flow_label >> 16) & 0x0F
    _put16(frames, v6, 16, flow_label & 0xFFFF)
    _put16(frames, v6, 18, table.ip_length[v6].astype(np.uint32) - 40)
    frames[v6, 20] = table.protocol[v6]
    frames[v6, 21] = table.ttl[v6]
    frames[v6, 22:38] = table.src_addr[v6]
    frames[v6, 38:54] = table.dst_addr[v6]

    protocol = table.protocol
    is_tcp = protocol == packets.IPPROTO_TCP
    is_udp = protocol == packets.IPPROTO_UDP
    is_icmp = (protocol == packets.IPPROTO_ICMP) | (protocol == packets.IPPROTO_ICMPV6)
    l4_len = np.zeros(count, dtype=np.int64)
    l4_len[is_tcp] = 20 + TCP_OPTIONS_LEN[table.tcp_options[is_tcp]]
    l4_len[is_udp | is_icmp] = 8
    ip_header_len = l4_offset - 14

    for offset in (14 + 20, 14 + 40):
        at = l4_offset == offset
        tcp = np.flatnonzero(at & is_tcp)
        _put16(frames, tcp, offset, table.src_port[tcp])
        _put16(frames, tcp, offset + 2, table.dst_port[tcp])
        _put32(frames, tcp, offset + 4, table.tcp_seq[tcp])
        _put32(frames, tcp, offset + 8, table.tcp_ack[tcp])
        frames[tcp, offset + 12] = (l4_len[tcp] // 4) << 4
        frames[tcp, offset + 13] = table.tcp_flags[tcp]
        _put16(frames, tcp, offset + 14, table.tcp_window[tcp])
        _write_tcp_options(
            frames, table, tcp, offset + 20, mss=1460 if offset == 34 else 1440
        )
        _write_tcp_checksums(frames, table, tcp, offset, l4_len, ip_header_len, rng)

        udp = np.flatnonzero(at & is_udp)
        _put16(frames, udp, offset, table.src_port[udp])
        _put16(frames, udp, offset + 2, table.dst_port[udp])
        _put16(frames, udp, offset + 4, table.ip_length[udp] - (offset - 14))
        _put16(frames, udp, offset + 6, rng.integers(1, 0x10000, len(udp)))

        icmp = np.flatnonzero(at & is_icmp)
        frames[icmp, offset] = table.icmp_type[icmp]
        frames[icmp, offset + 1] = table.icmp_code[icmp]
        _put16(frames, icmp, offset + 2, rng.integers(0, 0x10000, len(icmp)))
        _put16(frames, icmp, offset + 4, table.icmp_id[icmp])
        _put16(frames, icmp, offset + 6, table.icmp_seq[icmp])

    caplen = (14 + ip_header_len + l4_len).astype(np.uint32)
    if count and caplen.max() > width:
        raise ValueError(f"headers of {caplen.max()} bytes exceed width {width}")
    wirelen = np.maximum(ETHERNET_MIN_FRAME, 14 + table.ip_length.astype(np.uint32))
    return frames, caplen, wirelen.astype(np.uint32)


def _write_tcp_options(
    frames: np.ndarray, table: PacketTable, rows: np.ndarray, col: int, *, mss: int
) -> None:
    """Write the TCP options of ``rows`` starting at byte ``col``."""
    syn = rows[table.tcp_options[rows] == TCP_OPTIONS_SYN]
    frames[syn, col : col + 4] = (2, 4, mss >> 8, mss & 0xFF)  # MSS
    frames[syn, col + 4 : col + 6] = (4, 2)  # SACK permitted
    frames[syn, col + 6 : col + 8] = (8, 10)  # timestamps
    _put32(frames, syn, col + 8, table.tcp_tsval[syn])
    _put32(frames, syn, col + 12, table.tcp_tsecr[syn])
    frames[syn, col + 16 : col + 20] = (1, 3, 3, 7)  # NOP, window scale 7

    stamped = rows[table.tcp_options[rows] == TCP_OPTIONS_TIMESTAMPS]
    frames[stamped, col : col + 4] = (1, 1, 8, 10)  # NOP, NOP, timestamps
    _put32(frames, stamped, col + 4, table.tcp_tsval[stamped])
    _put32(frames, stamped, col + 8, table.tcp_tsecr[stamped])


def _write_tcp_checksums(
    frames: np.ndarray,
    table: PacketTable,
    rows: np.ndarray,
    offset: int,
    l4_len: np.ndarray,
    ip_header_len: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Exact checksums for segments without payload, random ones for the others."""
    segment_len = table.ip_length[rows].astype(np.int64) - ip_header_len[rows]
    bare = segment_len == l4_len[rows]
    exact = rows[bare]
    if offset == 34:
        addresses = frames[exact, 26:34]
    else:
        addresses = frames[exact, 22:54]
    total = _ones_complement_sum(addresses).astype(np.uint64)
    total += _ones_complement_sum(frames[exact, offset : offset + 40])
    total += packets.IPPROTO_TCP + l4_len[exact].astype(np.uint64)
    while total.size and total.max() > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    _put16(frames, exact, offset + 16, ~total.astype(np.uint32) & 0xFFFF)
    loaded = rows[~bare]
    _put16(frames, loaded, offset + 16, rng.integers(0, 0x10000, len(loaded)))
