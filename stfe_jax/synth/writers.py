"""Writers of pcap and pcapng capture files, for building test captures in code.

``write_pcap`` writes classic libpcap files (microsecond or nanosecond timestamps,
either byte order); ``write_pcapng`` writes pcapng sections with their interfaces and
packets as Enhanced, Simple or obsolete Packet Blocks. Both optionally gzip the file.
Timestamps are given in nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip as gzip_module
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

import numpy as np

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002  # obsolete Packet Block
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

_OPT_ENDOFOPT = 0
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9


def _unpack_record(record: Sequence) -> tuple[int, bytes, int]:
    """``(ts_ns, data)`` or ``(ts_ns, data, wirelen)`` -> ``(ts_ns, data, wirelen)``."""
    if len(record) == 2:
        ts_ns, data = record
        return int(ts_ns), bytes(data), len(data)
    ts_ns, data, wirelen = record
    return int(ts_ns), bytes(data), int(wirelen)


@contextlib.contextmanager
def _open_for_writing(path_or_file, compress: bool) -> Iterator[BinaryIO]:
    """A binary stream to write to: the open file given, or a new file at a path."""
    if isinstance(path_or_file, str | os.PathLike):
        opener = gzip_module.open if compress else open
        with opener(path_or_file, "wb") as stream:
            yield stream
    elif compress:
        with gzip_module.GzipFile(fileobj=path_or_file, mode="wb") as stream:
            yield stream
    else:
        yield path_or_file


def write_pcap(
    path_or_file,
    records: Iterable[Sequence],
    *,
    link_type: int = LINKTYPE_ETHERNET,
    nanosecond: bool = False,
    big_endian: bool = False,
    snaplen: int = 65535,
    gzip: bool = False,
) -> int:
    """Write a classic pcap file; returns the number of packets written.

    Args:
      path_or_file: a path, or a binary file object open for writing.
      records: ``(ts_ns, data)`` or ``(ts_ns, data, wirelen)`` per packet, where
        ``ts_ns`` is nanoseconds since the Unix epoch (>= 0), ``data`` the packet's
        bytes and ``wirelen`` its length on the wire in bytes (default
        ``len(data)``). Data longer than ``snaplen`` is cut to ``snaplen`` bytes
        and the wirelen kept.
      link_type: LINKTYPE_* of every packet (1 Ethernet, 101 raw IP, ...).
      nanosecond: nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds
        (sub-microsecond digits are dropped).
      big_endian: write headers big-endian instead of little-endian.
      snaplen: the file's snapshot length in bytes.
      gzip: gzip the whole file.
    """
    order = ">" if big_endian else "<"
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    count = 0
    with _open_for_writing(path_or_file, gzip) as stream:
        stream.write(
            struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link_type)
        )
        for record in records:
            ts_ns, data, wirelen = _unpack_record(record)
            if ts_ns < 0:
                raise ValueError(f"packet {count}: negative timestamp {ts_ns} ns")
            seconds, fraction_ns = divmod(ts_ns, 1_000_000_000)
            fraction = fraction_ns if nanosecond else fraction_ns // 1000
            data = data[:snaplen]
            stream.write(
                struct.pack(order + "IIII", seconds, fraction, len(data), wirelen)
            )
            stream.write(data)
            count += 1
    return count


@dataclasses.dataclass
class PcapngInterface:
    """One Interface Description Block of a pcapng section.

    Attributes:
      link_type: LINKTYPE_* of the interface's packets.
      snaplen: bytes kept of each packet; 0 means no limit.
      if_tsresol: raw value of the if_tsresol option: ``n`` < 128 means units of
        10**-n s, ``128 | n`` means units of 2**-n s; None writes no option (the
        pcapng default, microseconds).
      name: if_name option, when given.
    """

    link_type: int = LINKTYPE_ETHERNET
    snaplen: int = 0
    if_tsresol: int | None = None
    name: str | None = None


@dataclasses.dataclass
class PcapngSection:
    """One pcapng section: its byte order, interfaces and packets.

    Attributes:
      interfaces: the section's interfaces; their index is the interface id.
      packets: ``(interface_id, ts_ns, data)`` or ``(interface_id, ts_ns, data,
        wirelen)`` per packet, ``ts_ns`` in nanoseconds since the Unix epoch.
      big_endian: byte order of the section's blocks.
      packet_block: "epb" (Enhanced Packet Blocks), "spb" (Simple Packet Blocks:
        no timestamp, interface 0 only) or "pb" (obsolete Packet Blocks).
      extra_blocks: ``(block_type, body)`` blocks written after the interfaces
        and before the packets, for instance unknown block types a reader must
        skip; ``body`` is padded to 4 bytes.
    """

    interfaces: list[PcapngInterface]
    packets: Iterable[Sequence] = ()
    big_endian: bool = False
    packet_block: str = "epb"
    extra_blocks: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)


def _pad4(data: bytes) -> bytes:
    """``data`` padded with zero bytes to a multiple of 4."""
    return data + b"\x00" * (-len(data) % 4)


def _block(order: str, block_type: int, body: bytes) -> bytes:
    """A pcapng block: type, total length, padded body, total length."""
    body = _pad4(body)
    total = 12 + len(body)
    return (
        struct.pack(order + "II", block_type, total)
        + body
        + struct.pack(order + "I", total)
    )


def _option(order: str, code: int, value: bytes) -> bytes:
    """One pcapng option: code, length, value padded to 4 bytes."""
    return struct.pack(order + "HH", code, len(value)) + _pad4(value)


def _timestamp_units(ts_ns: int, if_tsresol: int | None) -> int:
    """A timestamp in nanoseconds expressed in an interface's time units."""
    resolution = 6 if if_tsresol is None else if_tsresol
    if resolution & 0x80:
        return ts_ns * (1 << (resolution & 0x7F)) // 1_000_000_000
    if resolution <= 9:
        return ts_ns // 10 ** (9 - resolution)
    return ts_ns * 10 ** (resolution - 9)


def _interface_block(order: str, interface: PcapngInterface) -> bytes:
    """An Interface Description Block."""
    body = struct.pack(order + "HHI", interface.link_type, 0, interface.snaplen)
    options = b""
    if interface.name is not None:
        options += _option(order, _OPT_IF_NAME, interface.name.encode())
    if interface.if_tsresol is not None:
        options += _option(order, _OPT_IF_TSRESOL, bytes([interface.if_tsresol]))
    if options:
        body += options + _option(order, _OPT_ENDOFOPT, b"")
    return _block(order, PCAPNG_IDB, body)


def _packet_block(
    order: str,
    section: PcapngSection,
    packet: Sequence,
    index: int,
) -> bytes:
    """The packet's EPB, SPB or obsolete PB."""
    interface_id, *rest = packet
    ts_ns, data, wirelen = _unpack_record(rest)
    if not 0 <= interface_id < len(section.interfaces):
        raise ValueError(f"packet {index}: interface {interface_id} not defined")
    if ts_ns < 0:
        raise ValueError(f"packet {index}: negative timestamp {ts_ns} ns")
    interface = section.interfaces[interface_id]
    if interface.snaplen:
        data = data[: interface.snaplen]
    if section.packet_block == "spb":
        if interface_id != 0:
            raise ValueError(f"packet {index}: a Simple Packet Block is interface 0")
        return _block(order, PCAPNG_SPB, struct.pack(order + "I", wirelen) + data)
    units = _timestamp_units(ts_ns, interface.if_tsresol)
    high, low = units >> 32, units & 0xFFFFFFFF
    if section.packet_block == "pb":
        header = struct.pack(
            order + "HHIIII", interface_id, 0, high, low, len(data), wirelen
        )
        return _block(order, PCAPNG_PB, header + data)
    if section.packet_block != "epb":
        raise ValueError(f"packet_block {section.packet_block!r}: epb, spb or pb")
    header = struct.pack(order + "IIIII", interface_id, high, low, len(data), wirelen)
    return _block(order, PCAPNG_EPB, header + data)


def write_pcapng(
    path_or_file,
    sections: Iterable[PcapngSection],
    gzip: bool = False,
) -> int:
    """Write a pcapng file of one or more sections; returns packets written.

    Args:
      path_or_file: a path, or a binary file object open for writing.
      sections: the sections in file order (see ``PcapngSection``). Packet data
        longer than its interface's snaplen is cut, the wirelen kept.
      gzip: gzip the whole file.
    """
    count = 0
    with _open_for_writing(path_or_file, gzip) as stream:
        for section in sections:
            order = ">" if section.big_endian else "<"
            header = struct.pack(
                order + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1
            )  # section length -1: not given
            stream.write(_block(order, PCAPNG_SHB, header))
            for interface in section.interfaces:
                stream.write(_interface_block(order, interface))
            for block_type, body in section.extra_blocks:
                stream.write(_block(order, block_type, body))
            for packet in section.packets:
                stream.write(_packet_block(order, section, packet, count))
                count += 1
    return count


def write_pcap_frames(
    path_or_file,
    ts_ns: np.ndarray,
    frames: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    *,
    link_type: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
    nanosecond: bool = False,
    gzip: bool = False,
) -> int:
    """Write a little-endian pcap file from packet arrays at once; returns packets.

    The vectorised form of ``write_pcap`` for large generated captures.

    Args:
      path_or_file: a path, or a binary file object open for writing.
      ts_ns: (n,) int64 timestamps, nanoseconds since the Unix epoch (>= 0).
      frames: (n, width) uint8; row i holds packet i's bytes in its first
        ``caplen[i]`` columns.
      caplen: (n,) bytes captured of each packet; at most ``width`` and
        ``snaplen``.
      wirelen: (n,) bytes each packet had on the wire.
      link_type, snaplen, nanosecond, gzip: as in ``write_pcap``.
    """
    count, width = frames.shape
    caplen = np.asarray(caplen, dtype=np.int64)
    if len(ts_ns) != count or len(caplen) != count or len(wirelen) != count:
        raise ValueError("ts_ns, frames, caplen and wirelen differ in length")
    if count and (caplen.max() > min(width, snaplen) or caplen.min() < 0):
        raise ValueError(f"caplen outside 0..{min(width, snaplen)} bytes")
    if count and np.min(ts_ns) < 0:
        raise ValueError("negative timestamp")

    seconds, fraction_ns = np.divmod(np.asarray(ts_ns, dtype=np.int64), 1_000_000_000)
    fraction = fraction_ns if nanosecond else fraction_ns // 1000
    headers = np.empty((count, 4), dtype="<u4")
    headers[:, 0] = seconds
    headers[:, 1] = fraction
    headers[:, 2] = caplen
    headers[:, 3] = wirelen
    records = np.concatenate([headers.view(np.uint8), frames], axis=1)
    keep = np.arange(16 + width) < (16 + caplen)[:, None]

    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    with _open_for_writing(path_or_file, gzip) as stream:
        stream.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, link_type))
        stream.write(records[keep].tobytes())
    return count
