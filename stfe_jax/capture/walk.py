"""Compiled walks over the records of a pcap or pcapng byte window.

Each walk starts at a window position, copies every whole packet record it finds
into the batch arrays (header fields) and the batch byte buffer (captured bytes),
and stops with a status telling the caller what to do next: hand out the batch,
read more bytes, handle a block in Python, or report a damaged record.
"""

from __future__ import annotations

import numba
import numpy as np

# Walk statuses.
BATCH_FULL = 0  # the batch holds its maximum number of packets
NEED_MORE = 1  # the next record is not wholly inside the window
DATA_FULL = 2  # the next packet's bytes do not fit the batch byte buffer
SPECIAL_BLOCK = 3  # a pcapng section header or interface block: parse in Python
SKIP_BLOCK = 4  # a pcapng block to skip (at the returned position) runs past the window
BAD_CAPLEN = 5  # a record claims more captured bytes than allowed
BAD_BLOCK = 6  # a pcapng block length or layout is impossible

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_PB = 2
PCAPNG_SPB = 3
PCAPNG_EPB = 6

# Batch header-field arrays filled by the walks, in this order.
WALK_COLUMNS = (
    "ts_ns",
    "caplen",
    "wirelen",
    "link_type",
    "record_offset",
    "data_start",
)


@numba.njit(cache=True)
def _u32(buf, pos, big_endian):
    b0 = np.uint32(buf[pos])
    b1 = np.uint32(buf[pos + 1])
    b2 = np.uint32(buf[pos + 2])
    b3 = np.uint32(buf[pos + 3])
    if big_endian:
        return np.int64((b0 << 24) | (b1 << 16) | (b2 << 8) | b3)
    return np.int64((b3 << 24) | (b2 << 16) | (b1 << 8) | b0)


@numba.njit(cache=True)
def _u16(buf, pos, big_endian):
    b0 = np.int64(buf[pos])
    b1 = np.int64(buf[pos + 1])
    if big_endian:
        return (b0 << 8) | b1
    return (b1 << 8) | b0


@numba.njit(cache=True)
def walk_pcap(
    buf,
    pos,
    end,
    base,
    big_endian,
    frac_to_ns,
    record_header_len,
    max_caplen,
    link_type,
    ts_ns,
    caplen,
    wirelen,
    link_types,
    record_offset,
    data_start,
    n,
    data,
    data_used,
):
    """Walks pcap records in ``buf[pos:end]`` (stream offset of ``buf[0]``: base).

    Returns (status, pos, n, data_used): the position of the first record not
    taken, the packets now in the batch, and the bytes now used in ``data``.
    """
    n_max = ts_ns.shape[0]
    while n < n_max:
        if end - pos < record_header_len:
            return NEED_MORE, pos, n, data_used
        incl = _u32(buf, pos + 8, big_endian)
        if incl > max_caplen:
            return BAD_CAPLEN, pos, n, data_used
        if end - pos < record_header_len + incl:
            return NEED_MORE, pos, n, data_used
        if data_used + incl > data.shape[0]:
            return DATA_FULL, pos, n, data_used
        seconds = _u32(buf, pos, big_endian)
        fraction = _u32(buf, pos + 4, big_endian)
        first = pos + record_header_len
        data[data_used : data_used + incl] = buf[first : first + incl]
        ts_ns[n] = seconds * 1_000_000_000 + fraction * frac_to_ns
        caplen[n] = incl
        wirelen[n] = _u32(buf, pos + 12, big_endian)
        link_types[n] = link_type
        record_offset[n] = base + pos
        data_start[n] = data_used
        n += 1
        data_used += incl
        pos = first + incl
    return BATCH_FULL, pos, n, data_used


@numba.njit(cache=True)
def _ticks_to_ns(ticks, multiplier, divisor, shift):
    """Converts interface time ticks to nanoseconds (decimal or binary units)."""
    if shift < 0:
        signed_ticks = np.int64(ticks)
        if divisor == 1:
            return signed_ticks * multiplier
        return signed_ticks // divisor
    whole = ticks >> np.uint64(shift)
    part = ticks & ((np.uint64(1) << np.uint64(shift)) - np.uint64(1))
    if shift <= 33:
        part_ns = (part * np.uint64(1_000_000_000)) >> np.uint64(shift)
    else:
        part_ns = np.uint64(float(part) / float(2.0**shift) * 1e9)
    return np.int64(whole * np.uint64(1_000_000_000) + part_ns)


@numba.njit(cache=True)
def walk_pcapng(
    buf,
    pos,
    end,
    base,
    big_endian,
    if_link_type,
    if_snaplen,
    if_ts_multiplier,
    if_ts_divisor,
    if_ts_shift,
    if_ts_offset_ns,
    max_caplen,
    max_block_len,
    ts_ns,
    caplen,
    wirelen,
    link_types,
    record_offset,
    data_start,
    n,
    data,
    data_used,
    counters,
):
    """Walks pcapng blocks of one section in ``buf[pos:end]``.

    Packet blocks (enhanced, simple, obsolete) become packets; section header and
    interface description blocks stop the walk (SPECIAL_BLOCK) for the caller to
    parse; other blocks are skipped by their length. ``counters[0]`` counts packets
    of undefined interfaces (skipped).

    Returns (status, pos, n, data_used) as ``walk_pcap`` does.
    """
    n_max = ts_ns.shape[0]
    n_interfaces = if_link_type.shape[0]
    while n < n_max:
        if end - pos < 8:
            return NEED_MORE, pos, n, data_used
        block_type = _u32(buf, pos, big_endian)
        block_len = _u32(buf, pos + 4, big_endian)
        if block_type == PCAPNG_SHB or block_type == PCAPNG_IDB:
            return SPECIAL_BLOCK, pos, n, data_used
        if block_len < 12 or block_len % 4 != 0:
            return BAD_BLOCK, pos, n, data_used
        if block_type != PCAPNG_EPB and block_type != PCAPNG_SPB:
            if block_type != PCAPNG_PB:
                if pos + block_len > end:
                    return SKIP_BLOCK, pos, n, data_used
                pos += block_len
                continue
        if block_len > max_block_len:
            return BAD_BLOCK, pos, n, data_used
        if end - pos < block_len:
            return NEED_MORE, pos, n, data_used
        if _u32(buf, pos + block_len - 4, big_endian) != block_len:
            return BAD_BLOCK, pos, n, data_used
        ticks = np.uint64(0)
        if block_type == PCAPNG_SPB:
            if block_len < 16:
                return BAD_BLOCK, pos, n, data_used
            interface = 0
            orig = _u32(buf, pos + 8, big_endian)
            incl = min(orig, block_len - 16)
            if interface < n_interfaces and if_snaplen[interface] > 0:
                incl = min(incl, if_snaplen[interface])
            first = pos + 12
        else:
            if block_len < 32:
                return BAD_BLOCK, pos, n, data_used
            if block_type == PCAPNG_EPB:
                interface = _u32(buf, pos + 8, big_endian)
            else:
                interface = _u16(buf, pos + 8, big_endian)
            high = np.uint64(_u32(buf, pos + 12, big_endian))
            low = np.uint64(_u32(buf, pos + 16, big_endian))
            ticks = (high << np.uint64(32)) | low
            incl = _u32(buf, pos + 20, big_endian)
            orig = _u32(buf, pos + 24, big_endian)
            first = pos + 28
            if incl > max_caplen:
                return BAD_CAPLEN, pos, n, data_used
            if 32 + incl > block_len:
                return BAD_BLOCK, pos, n, data_used
        if interface >= n_interfaces:
            counters[0] += 1
            pos += block_len
            continue
        if incl > max_caplen:
            return BAD_CAPLEN, pos, n, data_used
        if data_used + incl > data.shape[0]:
            return DATA_FULL, pos, n, data_used
        data[data_used : data_used + incl] = buf[first : first + incl]
        if block_type == PCAPNG_SPB:
            ts_ns[n] = 0
        else:
            ts_ns[n] = (
                _ticks_to_ns(
                    ticks,
                    if_ts_multiplier[interface],
                    if_ts_divisor[interface],
                    if_ts_shift[interface],
                )
                + if_ts_offset_ns[interface]
            )
        caplen[n] = incl
        wirelen[n] = orig
        link_types[n] = if_link_type[interface]
        record_offset[n] = base + pos
        data_start[n] = data_used
        n += 1
        data_used += incl
        pos += block_len
    return BATCH_FULL, pos, n, data_used
