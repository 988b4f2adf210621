"""Per-capture counts of what the reader decoded (the ``python -m`` command's
figures): packets, IP versions, TCP/UDP, fragments and conversations."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import numpy as np

from stfe_jax.capture.columns import PacketBatch
from stfe_jax.capture.errors import CaptureFormatError
from stfe_jax.capture.reader import open_capture

TCP = 6
UDP = 17
# Unique conversation keys are merged once this many have piled up.
_MERGE_ROWS = 1 << 20


def conversation_keys(batch: PacketBatch) -> np.ndarray:
    """One row per TCP/UDP packet with both ports captured, naming its
    bidirectional conversation: (protocol | ip_version << 8, lower end, higher end),
    each end being (address high 8 bytes, address low 8 bytes, port), as uint64.

    Returns an array of shape (packets, 7).
    """
    # TODO: a transport header whose first 4 bytes were captured but lie past
    # the IP length field's end (damaged packets) has ports 0 here, and counts
    # as a conversation with port 0; Wireshark lists none for it.
    has_ports = (
        (batch.ip_version > 0)
        & ((batch.protocol == TCP) | (batch.protocol == UDP))
        & (batch.l4_offset >= 0)
        & (batch.l4_offset.astype(np.int64) + 4 <= batch.caplen)
    )
    src = batch.src_addr[has_ports]
    dst = batch.dst_addr[has_ports]
    src_high = src[:, :8].copy().view(">u8")[:, 0].astype(np.uint64)
    src_low = src[:, 8:].copy().view(">u8")[:, 0].astype(np.uint64)
    dst_high = dst[:, :8].copy().view(">u8")[:, 0].astype(np.uint64)
    dst_low = dst[:, 8:].copy().view(">u8")[:, 0].astype(np.uint64)
    src_port = batch.src_port[has_ports].astype(np.uint64)
    dst_port = batch.dst_port[has_ports].astype(np.uint64)
    src_first = (src_high < dst_high) | (
        (src_high == dst_high)
        & ((src_low < dst_low) | ((src_low == dst_low) & (src_port <= dst_port)))
    )
    kind = batch.protocol[has_ports].astype(np.uint64) | (
        batch.ip_version[has_ports].astype(np.uint64) << np.uint64(8)
    )
    return np.stack(
        [
            kind,
            np.where(src_first, src_high, dst_high),
            np.where(src_first, src_low, dst_low),
            np.where(src_first, src_port, dst_port),
            np.where(src_first, dst_high, src_high),
            np.where(src_first, dst_low, src_low),
            np.where(src_first, dst_port, src_port),
        ],
        axis=1,
    )


def _unique_rows(rows: np.ndarray) -> np.ndarray:
    if rows.shape[0] == 0:
        return rows
    as_void = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1] * 8)))
    return np.unique(as_void).view(np.uint64).reshape(-1, rows.shape[1])


def summarize_capture(file: str | os.PathLike | BinaryIO) -> dict[str, Any]:
    """Reads a whole capture and counts what was decoded, like capinfos.

    Counts take the outermost network header: ``ipv4``/``ipv6`` are packets whose
    outermost IP header is that version; ``tcp``/``udp`` packets whose transport
    header directly above it (past IPv6 extension headers) is that protocol and
    was captured (non-first fragments carry none); ``ip_fragments`` packets with
    IPv4 more-fragments set or a non-zero offset, or an IPv6 fragment header;
    ``tcp_udp_conversations`` distinct bidirectional (protocol, address and port
    pair) over the whole file, with no timeout.

    Returns:
      A dict with ``path``, ``format``, ``link_types`` (link type as a string ->
      packets), ``packets``, ``ipv4``, ``ipv6``, ``tcp``, ``udp``,
      ``ip_fragments``, ``tcp_udp_conversations``, ``warnings`` and ``error``
      (None, or why the file could not be read to its end). A file that cannot be
      opened or is not a capture gives zero counts and the reason in ``error``.
    """
    path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else "<stream>"
    summary: dict[str, Any] = {
        "path": path,
        "format": None,
        "link_types": {},
        "packets": 0,
        "ipv4": 0,
        "ipv6": 0,
        "tcp": 0,
        "udp": 0,
        "ip_fragments": 0,
        "tcp_udp_conversations": 0,
        "warnings": [],
        "error": None,
    }
    try:
        capture = open_capture(file)
    except (CaptureFormatError, OSError) as err:
        summary["error"] = str(err)
        return summary

    conversations = np.zeros((0, 7), dtype=np.uint64)
    pending: list[np.ndarray] = []
    pending_rows = 0
    with capture:
        for batch in capture.batches():
            is_ip = batch.ip_version > 0
            has_transport = is_ip & (batch.l4_offset >= 0)
            summary["ipv4"] += int(np.count_nonzero(batch.ip_version == 4))
            summary["ipv6"] += int(np.count_nonzero(batch.ip_version == 6))
            summary["tcp"] += int(
                np.count_nonzero(has_transport & (batch.protocol == TCP))
            )
            summary["udp"] += int(
                np.count_nonzero(has_transport & (batch.protocol == UDP))
            )
            summary["ip_fragments"] += int(np.count_nonzero(is_ip & batch.is_fragment))
            keys = _unique_rows(conversation_keys(batch))
            pending.append(keys)
            pending_rows += keys.shape[0]
            if pending_rows > _MERGE_ROWS:
                conversations = _unique_rows(np.concatenate([conversations, *pending]))
                pending, pending_rows = [], 0
        conversations = _unique_rows(np.concatenate([conversations, *pending]))

    summary["path"] = capture.path
    summary["format"] = capture.format
    summary["link_types"] = {
        str(kind): count for kind, count in sorted(capture.link_types.items())
    }
    summary["packets"] = capture.packets_read
    summary["tcp_udp_conversations"] = int(conversations.shape[0])
    summary["warnings"] = list(capture.warnings)
    summary["error"] = capture.error
    return summary
