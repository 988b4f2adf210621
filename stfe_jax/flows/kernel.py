"""Compiled open-flow table: the per-packet work of flow cutting, in numba.

The state of every open flow lives in preallocated numpy arrays indexed by a slot
number; an open-addressing hash table (linear probing, tombstones, rebuilt when
crowded) maps a flow key to its slot. ``process_packets`` walks a batch of packets in
capture order, ends flows on timeouts and TCP FIN/RST, and appends each packet to its
flow (its bytes only while the flow holds fewer than ``packets_per_flow``). Ended
flows keep their slot until the Python side has copied them out and released them.

The flow key is (lower end, higher end, ports, protocol, VLAN) where an end is
(address, port) and the two ends are put in canonical order, so that both directions
of a conversation share one key. Addresses enter the key as two big-endian 64-bit
words each, so integer comparison is byte order comparison.

Masking: ``mask_packet_row`` zeroes header fields of a packet's sample bytes as it
is appended. Every field is located from the packet's own headers (IPv4 IHL, the
transport offset past IPv6 extension headers, the TCP data offset), never at a
fixed offset, and only bytes that were captured and kept are touched.

All compiled code of flow cutting lives in this one file on purpose: numba's
on-disk cache of a function is invalidated only by changes to its own file, so a
callee in another module could change without the cached caller noticing.

TODO: ``mask_ip_checksum_id`` leaves the identification of an IPv6 fragment header
as it is; its position is not among the packet columns (``l4_offset`` points past
the extension headers) and finding it needs a walk of the extension header chain.
The header an ICMP error quotes is masked like the packet's own (addresses, ports,
checksums, TTL, sequence numbers), since it names the same hosts.
TODO: inner headers of tunnels (GRE, IP in IP) keep their addresses and ports;
masking them needs the tunnel headers decoded.
"""

from __future__ import annotations

import numba
import numpy as np

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
PROTO_ICMP = 1
# ICMPv6: its checksum covers the addresses through the pseudo-header.
PROTO_ICMPV6 = 58

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


@numba.njit(cache=True, inline="always")
def is_icmp_error(protocol, icmp_type):
    """True for ICMP(v6) messages that quote the packet they report on
    (ICMP: unreachable, source quench, redirect, time exceeded, parameter
    problem; ICMPv6: unreachable, packet too big, time exceeded, parameter)."""
    if protocol == PROTO_ICMP:
        return (
            icmp_type == 3
            or icmp_type == 4
            or icmp_type == 5
            or icmp_type == 11
            or icmp_type == 12
        )
    if protocol == PROTO_ICMPV6:
        return 1 <= icmp_type <= 4
    return False


@numba.njit(cache=True)
def _mask_quoted(row, q, kept, protocol, mask_bits):
    """Mask the header an ICMP error quotes, which starts at ``row[q]``."""
    if q >= kept:
        return
    if protocol == PROTO_ICMP:
        if row[q] >> 4 != 4:
            return
        if mask_bits & MASK_ADDRESSES:
            _zero(row, q + 12, q + 20, kept)
        if mask_bits & MASK_IP_CHECKSUM_ID:
            _zero(row, q + 4, q + 6, kept)
            _zero(row, q + 10, q + 12, kept)
        if mask_bits & MASK_TTL:
            _zero(row, q + 8, q + 9, kept)
        if q + 9 >= kept:
            return
        inner_protocol = row[q + 9]
        l4 = q + (row[q] & 0x0F) * 4
    else:
        if row[q] >> 4 != 6:
            return
        if mask_bits & MASK_ADDRESSES:
            _zero(row, q + 8, q + 40, kept)
        if mask_bits & MASK_TTL:
            _zero(row, q + 7, q + 8, kept)
        if mask_bits & MASK_IPV6_FLOW_LABEL:
            if q + 1 < kept:
                row[q + 1] &= 0xF0
            _zero(row, q + 2, q + 4, kept)
        if q + 6 >= kept:
            return
        inner_protocol = row[q + 6]
        l4 = q + 40
    if mask_bits & MASK_PORTS and has_ports(inner_protocol):
        _zero(row, l4, l4 + 4, kept)
    if mask_bits & MASK_IP_CHECKSUM_ID and inner_protocol == PROTO_UDP:
        _zero(row, l4 + 6, l4 + 8, kept)
    if mask_bits & MASK_TCP_SEQ_ACK and inner_protocol == PROTO_TCP:
        _zero(row, l4 + 4, l4 + 12, kept)


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
    if (protocol == PROTO_ICMP or protocol == PROTO_ICMPV6) and is_icmp_error(
        protocol, row[l4_rel]
    ):
        if mask_bits & MASK_IP_CHECKSUM_ID and protocol == PROTO_ICMP:
            _zero(row, l4_rel + 2, l4_rel + 4, kept)  # it covers the quoted header
        _mask_quoted(row, l4_rel + 8, kept, protocol, mask_bits)
    if mask_bits & MASK_IP_CHECKSUM_ID:
        # These checksums cover the addresses through the pseudo-header.
        if protocol == PROTO_TCP:
            _zero(row, l4_rel + 16, l4_rel + 18, kept)
        elif protocol == PROTO_UDP:
            _zero(row, l4_rel + 6, l4_rel + 8, kept)
        elif protocol == PROTO_ICMPV6:
            _zero(row, l4_rel + 2, l4_rel + 4, kept)
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


# Columns of the int64 per-slot state.
S_START = 0  # first packet, ns
S_LAST = 1  # latest packet, ns
S_PACKETS = 2
S_BYTES = 3  # wire bytes
S_FWD = 4  # packets from the initiator
S_NSAMPLE = 5  # packets in the sample, <= P
S_TPOS = 6  # position of the slot in the hash table
NUM_I64 = 7

# Columns of the uint8 per-slot state.
U_LIVE = 0  # 1 while the slot holds a flow (open or ended but not yet released)
U_FIN = 1  # bit 0: FIN seen from the initiator, bit 1: from the responder
U_INIT_LO = 2  # 1 when the initiator is the lower end of the key
U_FLAGS = 3  # OR of TCP flags
U_PROTO = 4
U_IPVER = 5
U_REASON = 6  # why the flow ended (REASON_*), 0 while open
NUM_U8 = 7

# Why a flow ended.
REASON_IDLE = 1
REASON_ACTIVE = 2
REASON_FIN = 3
REASON_RST = 4
REASON_END_OF_CAPTURE = 5
REASON_NAMES = {
    REASON_IDLE: "idle_timeout",
    REASON_ACTIVE: "active_timeout",
    REASON_FIN: "fin",
    REASON_RST: "rst",
    REASON_END_OF_CAPTURE: "end_of_capture",
}

# Slots of the int64 counters array.
C_FREE_TOP = 0  # free slots on the free stack
C_TABLE_USED = 1  # live entries in the hash table
C_TABLE_TOMB = 2  # tombstones in the hash table
C_PACKETS = 3  # packets seen
C_NON_IP = 4  # packets without an IP header, skipped
C_FRAG_JOINED = 5  # non-first fragments that joined their datagram's flow
C_FRAG_DROPPED = 6  # non-first fragments whose first fragment was not seen
C_NOW = 7  # latest packet time seen, ns
C_ENDED = 8  # ended slots waiting in the ended buffer
C_REASON0 = 9  # C_REASON0 + reason: flows ended for that reason
C_MAX_OPEN = 15  # the most flows open at once
C_ICMP_ATTACHED = 16  # ICMP errors that joined the flow of the packet they quote
NUM_COUNTERS = 17

# Slots of the int64 parameters array.
P_IDLE_NS = 0
P_ACTIVE_NS = 1
P_CLOSE_WAIT_NS = 2
P_FRAG_TIMEOUT_NS = 3
P_VLAN_IN_KEY = 4
P_MASK_BITS = 5
NUM_PARAMS = 6

EMPTY = -1
TOMBSTONE = -2

TCP_FIN = 0x01
TCP_RST = 0x04
TCP_ACK = 0x10

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_S48 = np.uint64(48)
_S16 = np.uint64(16)
_S8 = np.uint64(8)


@numba.njit(cache=True, inline="always")
def _mix(h, v):
    h = (h ^ v) * _M1
    return h ^ (h >> _S29)


@numba.njit(cache=True, inline="always")
def key_hash(k0, k1, k2, k3, k4):
    """64-bit hash of a five-word key."""
    h = _mix(_mix(_mix(_mix(_mix(_M2, k0), k1), k2), k3), k4)
    return (h * _M2) ^ (h >> _S32)


@numba.njit(cache=True, inline="always")
def _be64(addr, i, start):
    v = np.uint64(0)
    for j in range(start, start + 8):
        v = (v << _S8) | np.uint64(addr[i, j])
    return v


@numba.njit(cache=True, inline="always")
def _be_bytes(data, pos, count):
    v = np.uint64(0)
    for j in range(pos, pos + count):
        v = (v << _S8) | np.uint64(data[j])
    return v


@numba.njit(cache=True)
def _quoted_five_tuple(data, q, end, protocol):
    """(found, src hi, src lo, dst hi, dst lo, protocol, src port, dst port) of the
    packet quoted by an ICMP (IPv4) or ICMPv6 (IPv6) error, whose header starts at
    ``data[q]``; ``end`` is where the captured bytes end."""
    zero = np.uint64(0)
    if protocol == PROTO_ICMP:
        if q + 20 > end or data[q] >> 4 != 4:
            return False, zero, zero, zero, zero, 0, zero, zero
        if (data[q + 6] & 0x1F) != 0 or data[q + 7] != 0:
            return False, zero, zero, zero, zero, 0, zero, zero  # a later fragment
        inner_protocol = int(data[q + 9])
        mapped = np.uint64(0xFFFF) << _S32
        s0, s1 = zero, mapped | _be_bytes(data, q + 12, 4)
        d0, d1 = zero, mapped | _be_bytes(data, q + 16, 4)
        l4 = q + (data[q] & 0x0F) * 4
    else:
        if q + 40 > end or data[q] >> 4 != 6:
            return False, zero, zero, zero, zero, 0, zero, zero
        inner_protocol = int(data[q + 6])
        s0, s1 = _be_bytes(data, q + 8, 8), _be_bytes(data, q + 16, 8)
        d0, d1 = _be_bytes(data, q + 24, 8), _be_bytes(data, q + 32, 8)
        l4 = q + 40
    sport, dport = zero, zero
    if has_ports(inner_protocol):
        if l4 + 4 > end:
            return False, zero, zero, zero, zero, 0, zero, zero
        sport = _be_bytes(data, l4, 2)
        dport = _be_bytes(data, l4 + 2, 2)
    return True, s0, s1, d0, d1, inner_protocol, sport, dport


@numba.njit(cache=True)
def _table_find(table, s_key, k0, k1, k2, k3, k4, h):
    """(slot, table position): slot -1 and the position to insert at when absent."""
    mask = table.shape[0] - 1
    pos = np.int64(h & np.uint64(mask))
    first_tomb = -1
    while True:
        slot = table[pos]
        if slot == EMPTY:
            if first_tomb >= 0:
                return -1, first_tomb
            return -1, pos
        if slot == TOMBSTONE:
            if first_tomb < 0:
                first_tomb = pos
        elif (
            s_key[slot, 0] == k0
            and s_key[slot, 1] == k1
            and s_key[slot, 2] == k2
            and s_key[slot, 3] == k3
            and s_key[slot, 4] == k4
        ):
            return slot, pos
        pos = (pos + 1) & mask


@numba.njit(cache=True)
def rebuild_table(table, s_key, s_i64, s_u8, counters):
    """Re-insert every open flow into a cleared table (drops the tombstones)."""
    table[:] = EMPTY
    mask = table.shape[0] - 1
    used = 0
    for slot in range(s_u8.shape[0]):
        if s_u8[slot, U_LIVE] == 0 or s_u8[slot, U_REASON] != 0:
            continue
        h = key_hash(
            s_key[slot, 0],
            s_key[slot, 1],
            s_key[slot, 2],
            s_key[slot, 3],
            s_key[slot, 4],
        )
        pos = np.int64(h & np.uint64(mask))
        while table[pos] != EMPTY:
            pos = (pos + 1) & mask
        table[pos] = slot
        s_i64[slot, S_TPOS] = pos
        used += 1
    counters[C_TABLE_USED] = used
    counters[C_TABLE_TOMB] = 0


@numba.njit(cache=True)
def _end_flow(slot, reason, table, s_i64, s_u8, counters, ended):
    """Mark a flow ended, take it out of the table and queue it for copying out."""
    table[s_i64[slot, S_TPOS]] = TOMBSTONE
    counters[C_TABLE_USED] -= 1
    counters[C_TABLE_TOMB] += 1
    s_u8[slot, U_REASON] = reason
    counters[C_REASON0 + reason] += 1
    ended[counters[C_ENDED]] = slot
    counters[C_ENDED] += 1


@numba.njit(cache=True)
def process_packets(
    start,
    ts_ns,
    caplen,
    wirelen,
    vlan_id,
    net_offset,
    ip_version,
    src_addr,
    dst_addr,
    protocol,
    l4_offset,
    src_port,
    dst_port,
    tcp_flags,
    ip_id,
    frag_offset,
    is_fragment,
    data_start,
    data,
    table,
    free,
    s_key,
    s_i64,
    s_u8,
    s_addr,
    s_port,
    s_bytes,
    s_caplen,
    s_dir,
    s_iat,
    frag_key,
    frag_val,
    params,
    counters,
    ended,
):
    """Assign packets ``start..`` of a batch to flows; returns where it stopped.

    It stops early (returning the index of the first unprocessed packet) when it
    needs a free slot and none is left, or when the ended buffer is nearly full; the
    caller then copies out the ended flows, releases or adds slots, and calls again.
    ``ended`` must hold at least two entries more than the packets left.
    """
    n = ts_ns.shape[0]
    packets_per_flow = s_bytes.shape[1]
    bytes_per_packet = s_bytes.shape[2]
    idle_ns = params[P_IDLE_NS]
    active_ns = params[P_ACTIVE_NS]
    close_wait_ns = params[P_CLOSE_WAIT_NS]
    frag_timeout_ns = params[P_FRAG_TIMEOUT_NS]
    vlan_in_key = params[P_VLAN_IN_KEY] != 0
    mask_bits = params[P_MASK_BITS]
    table_size = table.shape[0]
    frag_mask = np.uint64(frag_key.shape[0] - 1)

    for i in range(start, n):
        if counters[C_TABLE_USED] + counters[C_TABLE_TOMB] > table_size // 2:
            rebuild_table(table, s_key, s_i64, s_u8, counters)

        ts = ts_ns[i]
        if ts > counters[C_NOW]:
            counters[C_NOW] = ts
        if net_offset[i] < 0 or ip_version[i] == 0:
            counters[C_PACKETS] += 1
            counters[C_NON_IP] += 1
            continue

        s0 = _be64(src_addr, i, 0)
        s1 = _be64(src_addr, i, 8)
        d0 = _be64(dst_addr, i, 0)
        d1 = _be64(dst_addr, i, 8)
        proto = protocol[i]
        sport = np.uint64(0)
        dport = np.uint64(0)
        if has_ports(proto):
            sport = np.uint64(src_port[i])
            dport = np.uint64(dst_port[i])

        # Fragments: the first one (offset 0) records its datagram's ports; later ones
        # take them from there, or are dropped when the first was not seen.
        if is_fragment[i]:
            f4 = (np.uint64(proto) << _S32) | np.uint64(ip_id[i])
            fh = key_hash(s0, s1, d0, d1, f4)
            fpos = np.int64(fh & frag_mask)
            if frag_offset[i] == 0:
                frag_key[fpos, 0] = s0
                frag_key[fpos, 1] = s1
                frag_key[fpos, 2] = d0
                frag_key[fpos, 3] = d1
                frag_key[fpos, 4] = f4
                frag_val[fpos, 0] = np.int64((sport << _S16) | dport)
                frag_val[fpos, 1] = ts
            else:
                if (
                    frag_val[fpos, 1] != 0
                    and frag_key[fpos, 0] == s0
                    and frag_key[fpos, 1] == s1
                    and frag_key[fpos, 2] == d0
                    and frag_key[fpos, 3] == d1
                    and frag_key[fpos, 4] == f4
                    and abs(ts - frag_val[fpos, 1]) <= frag_timeout_ns
                ):
                    ports = np.uint64(frag_val[fpos, 0])
                    sport = ports >> _S16
                    dport = ports & np.uint64(0xFFFF)
                    counters[C_FRAG_JOINED] += 1
                else:
                    counters[C_PACKETS] += 1
                    counters[C_FRAG_DROPPED] += 1
                    continue

        vlan = np.uint64(vlan_id[i]) if vlan_in_key else np.uint64(0)

        # An ICMP error joins the open flow of the packet it quotes, travelling
        # back towards that packet's source; otherwise it forms an ICMP flow.
        key_proto = int(proto)
        if (
            (proto == PROTO_ICMP or proto == PROTO_ICMPV6)
            and l4_offset[i] >= 0
            and not is_fragment[i]
        ):
            q = data_start[i] + l4_offset[i]
            end = data_start[i] + caplen[i]
            if q < end and is_icmp_error(proto, data[q]):
                found, q0, q1, q2, q3, qproto, qsport, qdport = _quoted_five_tuple(
                    data, q + 8, end, proto
                )
                if found:
                    q_lo = q0 < q2 or (
                        q0 == q2 and (q1 < q3 or (q1 == q3 and qsport <= qdport))
                    )
                    if q_lo:
                        j4 = (qsport << _S48) | (qdport << _S32)
                        j0, j1, j2, j3 = q0, q1, q2, q3
                    else:
                        j4 = (qdport << _S48) | (qsport << _S32)
                        j0, j1, j2, j3 = q2, q3, q0, q1
                    j4 = j4 | (np.uint64(qproto) << _S16) | vlan
                    jslot, _ = _table_find(
                        table, s_key, j0, j1, j2, j3, j4, key_hash(j0, j1, j2, j3, j4)
                    )
                    if (
                        jslot >= 0
                        and s_u8[jslot, U_FIN] != 3
                        and ts - s_i64[jslot, S_LAST] <= idle_ns
                        and ts - s_i64[jslot, S_START] <= active_ns
                    ):
                        s0, s1, d0, d1 = q2, q3, q0, q1
                        sport, dport = qdport, qsport
                        key_proto = qproto
                        counters[C_ICMP_ATTACHED] += 1

        # Canonical key: the lower (address, port) end first.
        src_lo = s0 < d0 or (s0 == d0 and (s1 < d1 or (s1 == d1 and sport <= dport)))
        if src_lo:
            k0, k1, k2, k3 = s0, s1, d0, d1
            k4 = (sport << _S48) | (dport << _S32)
        else:
            k0, k1, k2, k3 = d0, d1, s0, s1
            k4 = (dport << _S48) | (sport << _S32)
        k4 = k4 | (np.uint64(key_proto) << _S16) | vlan
        h = key_hash(k0, k1, k2, k3, k4)
        slot, pos = _table_find(table, s_key, k0, k1, k2, k3, k4, h)

        flags = tcp_flags[i] if proto == PROTO_TCP else 0
        pure_ack = flags == TCP_ACK

        # End the flow this packet would join when it has run out.
        if slot >= 0:
            gap = ts - s_i64[slot, S_LAST]
            if s_u8[slot, U_FIN] == 3 and not (pure_ack and gap <= close_wait_ns):
                _end_flow(slot, REASON_FIN, table, s_i64, s_u8, counters, ended)
                slot = -1
            elif gap > idle_ns:
                _end_flow(slot, REASON_IDLE, table, s_i64, s_u8, counters, ended)
                slot = -1
            elif ts - s_i64[slot, S_START] > active_ns:
                _end_flow(slot, REASON_ACTIVE, table, s_i64, s_u8, counters, ended)
                slot = -1
            if slot < 0:
                slot, pos = _table_find(table, s_key, k0, k1, k2, k3, k4, h)

        # Open a new flow.
        if slot < 0:
            if counters[C_FREE_TOP] == 0:
                if is_fragment[i] and frag_offset[i] > 0:
                    counters[C_FRAG_JOINED] -= 1  # counted again on the retry
                return i
            counters[C_FREE_TOP] -= 1
            slot = free[counters[C_FREE_TOP]]
            if table[pos] == TOMBSTONE:
                counters[C_TABLE_TOMB] -= 1
            table[pos] = slot
            counters[C_TABLE_USED] += 1
            if counters[C_TABLE_USED] > counters[C_MAX_OPEN]:
                counters[C_MAX_OPEN] = counters[C_TABLE_USED]
            s_key[slot, 0] = k0
            s_key[slot, 1] = k1
            s_key[slot, 2] = k2
            s_key[slot, 3] = k3
            s_key[slot, 4] = k4
            s_i64[slot, S_START] = ts
            s_i64[slot, S_LAST] = ts
            s_i64[slot, S_PACKETS] = 0
            s_i64[slot, S_BYTES] = 0
            s_i64[slot, S_FWD] = 0
            s_i64[slot, S_NSAMPLE] = 0
            s_i64[slot, S_TPOS] = pos
            s_u8[slot, U_LIVE] = 1
            s_u8[slot, U_FIN] = 0
            s_u8[slot, U_INIT_LO] = 1 if src_lo else 0
            s_u8[slot, U_FLAGS] = 0
            s_u8[slot, U_PROTO] = proto
            s_u8[slot, U_IPVER] = ip_version[i]
            s_u8[slot, U_REASON] = 0
            for j in range(16):
                s_addr[slot, j] = src_addr[i, j]
                s_addr[slot, 16 + j] = dst_addr[i, j]
            s_port[slot, 0] = np.uint16(sport)
            s_port[slot, 1] = np.uint16(dport)

        # Append the packet.
        direction = 0 if (1 if src_lo else 0) == s_u8[slot, U_INIT_LO] else 1
        k = s_i64[slot, S_NSAMPLE]
        if k < packets_per_flow:
            avail = np.int64(caplen[i]) - net_offset[i]
            if avail < 0:
                avail = 0
            kept = min(avail, bytes_per_packet)
            src = data_start[i] + net_offset[i]
            row = s_bytes[slot, k]
            for j in range(kept):
                row[j] = data[src + j]
            for j in range(kept, bytes_per_packet):
                row[j] = 0
            l4_rel = -1
            if l4_offset[i] >= 0:
                l4_rel = l4_offset[i] - net_offset[i]
            if mask_bits != 0:
                mask_packet_row(row, kept, ip_version[i], proto, l4_rel, mask_bits)
            s_caplen[slot, k] = min(avail, 65535)
            s_dir[slot, k] = direction
            if k == 0:
                s_iat[slot, k] = 0.0
            else:
                s_iat[slot, k] = (ts - s_i64[slot, S_LAST]) * 1e-9
            s_i64[slot, S_NSAMPLE] = k + 1
        s_i64[slot, S_LAST] = ts
        s_i64[slot, S_PACKETS] += 1
        s_i64[slot, S_BYTES] += wirelen[i]
        if direction == 0:
            s_i64[slot, S_FWD] += 1
        s_u8[slot, U_FLAGS] |= flags
        counters[C_PACKETS] += 1

        # TCP teardown: RST ends the flow at once; FIN from both sides closes it
        # after the final ACK (or when the close wait runs out).
        if flags & TCP_RST:
            _end_flow(slot, REASON_RST, table, s_i64, s_u8, counters, ended)
        elif flags & TCP_FIN:
            s_u8[slot, U_FIN] |= 1 << direction
        elif s_u8[slot, U_FIN] == 3 and pure_ack:
            _end_flow(slot, REASON_FIN, table, s_i64, s_u8, counters, ended)
    return n


@numba.njit(cache=True)
def expire_flows(now, table, s_i64, s_u8, params, counters, ended):
    """End every open flow that can take no more packets at time ``now`` (ns)."""
    idle_ns = params[P_IDLE_NS]
    active_ns = params[P_ACTIVE_NS]
    close_wait_ns = params[P_CLOSE_WAIT_NS]
    for slot in range(s_u8.shape[0]):
        if s_u8[slot, U_LIVE] == 0 or s_u8[slot, U_REASON] != 0:
            continue
        gap = now - s_i64[slot, S_LAST]
        if s_u8[slot, U_FIN] == 3 and gap > close_wait_ns:
            _end_flow(slot, REASON_FIN, table, s_i64, s_u8, counters, ended)
        elif gap > idle_ns:
            _end_flow(slot, REASON_IDLE, table, s_i64, s_u8, counters, ended)
        elif now - s_i64[slot, S_START] > active_ns:
            _end_flow(slot, REASON_ACTIVE, table, s_i64, s_u8, counters, ended)


@numba.njit(cache=True)
def end_all_flows(table, s_i64, s_u8, counters, ended):
    """End every open flow (the capture is over)."""
    for slot in range(s_u8.shape[0]):
        if s_u8[slot, U_LIVE] == 1 and s_u8[slot, U_REASON] == 0:
            _end_flow(slot, REASON_END_OF_CAPTURE, table, s_i64, s_u8, counters, ended)
