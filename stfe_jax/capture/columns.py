"""Per-packet columns: what the capture reader hands to every later stage.

A capture is read as a stream of ``PacketBatch`` objects. Each holds numpy arrays with
one entry per packet (struct-of-arrays), plus one flat byte buffer with every packet's
captured bytes, so that later stages work on whole columns instead of looping over
packets in Python.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# IPv4 addresses are stored as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d), so that
# both IP versions share one 16-byte address column.
IPV4_MAPPED_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)

# Column name -> (dtype, trailing shape). The order is the order of the dataclass.
PACKET_COLUMNS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "ts_ns": (np.dtype(np.int64), ()),
    "caplen": (np.dtype(np.uint32), ()),
    "wirelen": (np.dtype(np.uint32), ()),
    "link_type": (np.dtype(np.uint16), ()),
    "vlan_id": (np.dtype(np.uint16), ()),
    "net_offset": (np.dtype(np.int32), ()),
    "ip_version": (np.dtype(np.uint8), ()),
    "src_addr": (np.dtype(np.uint8), (16,)),
    "dst_addr": (np.dtype(np.uint8), (16,)),
    "protocol": (np.dtype(np.uint8), ()),
    "l4_offset": (np.dtype(np.int32), ()),
    "src_port": (np.dtype(np.uint16), ()),
    "dst_port": (np.dtype(np.uint16), ()),
    "tcp_flags": (np.dtype(np.uint8), ()),
    "ip_id": (np.dtype(np.uint32), ()),
    "frag_offset": (np.dtype(np.uint32), ()),
    "more_fragments": (np.dtype(np.bool_), ()),
    "is_fragment": (np.dtype(np.bool_), ()),
    "record_offset": (np.dtype(np.int64), ()),
    "data_start": (np.dtype(np.int64), ()),
}


@dataclasses.dataclass
class PacketBatch:
    """Decoded header fields of consecutive packets of one capture, and their bytes.

    Every column has one entry per packet, in capture order.

    Attributes:
      ts_ns: timestamp, nanoseconds since the Unix epoch.
      caplen: bytes captured of the packet (length of its bytes in ``data``).
      wirelen: bytes the packet had on the wire.
      link_type: LINKTYPE_* value of the interface the packet was captured on.
      vlan_id: outermost 802.1Q VLAN id, 0 when untagged.
      net_offset: offset in bytes of the network (IP) header from the start of the
        packet's bytes; -1 when no decodable IP header was found (non-IP
        ethertype, unknown link type, IP header cut short by the capture or with
        a version nibble contradicting the link layer).
      ip_version: 4 or 6 for the outermost IP header, 0 when there is none. A
        header cut short by the capture, or announced as IPv4 by the link layer
        but with another version nibble, still has its version here (as
        Wireshark counts it) while net_offset is -1 and the other fields are 0.
      src_addr, dst_addr: 16-byte addresses of the outermost IP header; IPv4 as
        IPv4-mapped IPv6 (``::ffff:a.b.c.d``); zeros when there is no IP header.
      protocol: transport protocol number (IPv4 protocol, or the IPv6 next header
        past the extension headers); 0 when there is no IP header.
      l4_offset: offset in bytes of the transport header from the start of the
        packet's bytes; -1 when absent (non-first fragment, IP or extension
        headers cut short). It may equal ``caplen`` when the capture stopped right
        before the transport header.
      src_port, dst_port: TCP/UDP ports (also SCTP/DCCP where decoded); 0 when the
        transport header is not TCP/UDP or its ports were not captured.
      tcp_flags: the TCP flags byte (FIN=0x01, SYN=0x02, RST=0x04, PSH=0x08,
        ACK=0x10, URG=0x20, ECE=0x40, CWR=0x80); 0 for other protocols.
      ip_id: IPv4 identification, or the IPv6 fragment header's identification.
      frag_offset: fragment offset in bytes (the header field times 8).
      more_fragments: the more-fragments flag.
      is_fragment: true for any fragment (more-fragments set, non-zero offset, or
        an IPv6 fragment header present).
      record_offset: byte offset of the packet's record in the (decompressed) file.
      data_start: offset of the packet's first captured byte in ``data``.
      data: flat buffer of the captured bytes of every packet of the batch.
    """

    ts_ns: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    link_type: np.ndarray
    vlan_id: np.ndarray
    net_offset: np.ndarray
    ip_version: np.ndarray
    src_addr: np.ndarray
    dst_addr: np.ndarray
    protocol: np.ndarray
    l4_offset: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    tcp_flags: np.ndarray
    ip_id: np.ndarray
    frag_offset: np.ndarray
    more_fragments: np.ndarray
    is_fragment: np.ndarray
    record_offset: np.ndarray
    data_start: np.ndarray
    data: np.ndarray

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def packet_bytes(self, i: int) -> np.ndarray:
        """Captured bytes of packet ``i`` of the batch (a view into ``data``)."""
        start = int(self.data_start[i])
        return self.data[start : start + int(self.caplen[i])]

    @classmethod
    def empty(cls, n: int = 0) -> PacketBatch:
        """A batch of ``n`` packets with every column zeroed and no bytes."""
        columns = {
            name: np.zeros((n, *shape), dtype=dtype)
            for name, (dtype, shape) in PACKET_COLUMNS.items()
        }
        columns["net_offset"][:] = -1
        columns["l4_offset"][:] = -1
        return cls(**columns, data=np.zeros(0, dtype=np.uint8))
