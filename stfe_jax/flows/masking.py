"""Masking of header fields in a packet's sample bytes (compiled, one packet at a time).

The sample row holds a packet's bytes from its IP header on. Every field is located
from the packet's own headers (IPv4 IHL, the transport offset past IPv6 extension
headers, the TCP data offset), never at a fixed offset, and only bytes that were
captured and kept are touched. Masked bytes are set to zero.
"""

from __future__ import annotations

import numba

from stfe_jax.flows.options import (
    MASK_ADDRESSES,
    MASK_IP_CHECKSUM_ID,
    MASK_IPV6_FLOW_LABEL,
    MASK_PORTS,
    MASK_TCP_SEQ_ACK,
    MASK_TCP_TIMESTAMPS,
    MASK_TTL,
)

# Transport protocols whose header starts with 16-bit source and destination ports.
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_DCCP = 33
PROTO_SCTP = 132

TCP_OPTION_END = 0
TCP_OPTION_NOP = 1
TCP_OPTION_TIMESTAMPS = 8


@numba.njit(cache=True, inline="always")
def _zero(row, start, stop, kept):
    """Zero ``row[start:stop]``, clipped to the ``kept`` bytes of the row."""
    if stop > kept:
        stop = kept
    for j in range(start, stop):
        row[j] = 0


@numba.njit(cache=True, inline="always")
def has_ports(protocol):
    """True for transport protocols whose header opens with two 16-bit ports."""
    return (
        protocol == PROTO_TCP
        or protocol == PROTO_UDP
        or protocol == PROTO_SCTP
        or protocol == PROTO_DCCP
    )


@numba.njit(cache=True)
def mask_packet_row(row, kept, ip_version, protocol, l4_rel, mask_bits):
    """Zero the masked header fields of one packet's sample bytes, in place.

    Args:
      row: uint8 sample row, the packet's bytes from the IP header on.
      kept: how many bytes of ``row`` hold packet bytes (the rest is padding).
      ip_version: 4 or 6.
      protocol: transport protocol number (past IPv6 extension headers).
      l4_rel: offset of the transport header from the IP header in bytes, or -1
        when the packet has none (non-first fragment, truncated capture).
      mask_bits: bitmask of the ``MASK_*`` options.
    """
    if ip_version == 4:
        if mask_bits & MASK_ADDRESSES:
            _zero(row, 12, 20, kept)
        if mask_bits & MASK_IP_CHECKSUM_ID:
            _zero(row, 4, 6, kept)
            _zero(row, 10, 12, kept)
        if mask_bits & MASK_TTL:
            _zero(row, 8, 9, kept)
    elif ip_version == 6:
        if mask_bits & MASK_ADDRESSES:
            _zero(row, 8, 40, kept)
        if mask_bits & MASK_TTL:
            _zero(row, 7, 8, kept)
        if mask_bits & MASK_IPV6_FLOW_LABEL:
            if kept > 1:
                row[1] &= 0xF0
            _zero(row, 2, 4, kept)

    if l4_rel < 0 or l4_rel >= kept:
        return
    if mask_bits & MASK_PORTS and has_ports(protocol):
        _zero(row, l4_rel, l4_rel + 4, kept)
    if protocol != PROTO_TCP:
        return
    if mask_bits & MASK_TCP_SEQ_ACK:
        _zero(row, l4_rel + 4, l4_rel + 12, kept)
    if mask_bits & MASK_TCP_TIMESTAMPS and l4_rel + 12 < kept:
        header_end = l4_rel + (row[l4_rel + 12] >> 4) * 4
        if header_end > kept:
            header_end = kept
        j = l4_rel + 20
        while j < header_end:
            kind = row[j]
            if kind == TCP_OPTION_END:
                break
            if kind == TCP_OPTION_NOP:
                j += 1
                continue
            if j + 1 >= header_end:
                break
            length = row[j + 1]
            if length < 2:
                break
            if kind == TCP_OPTION_TIMESTAMPS:
                _zero(row, j + 2, j + length, header_end)
            j += length
