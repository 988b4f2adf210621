"""Reading a capture file or stream into ``PacketBatch``es: ``open_capture``."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from absl import logging

from stfe_jax.capture import decode, walk
from stfe_jax.capture.columns import PACKET_COLUMNS, PacketBatch
from stfe_jax.capture.errors import CaptureFormatError
from stfe_jax.capture.linktypes import DECODED, link_type_name
from stfe_jax.capture.source import ByteWindow, GzipSource, open_source

# Largest caplen accepted in a record (Wireshark's limit for most link types).
MAX_CAPLEN = 256 * 1024
# Largest pcapng block parsed whole (interface descriptions, packet blocks).
MAX_BLOCK_LEN = 16 * 1024 * 1024
DEFAULT_WINDOW_BYTES = 32 * 1024 * 1024
# Room in the window beyond the largest caplen, for record headers and options.
_MIN_WINDOW_SLACK = 64 * 1024
# A batch's byte buffer starts at this many bytes per packet and doubles as needed,
# up to MAX_BATCH_BYTES.
_INITIAL_BYTES_PER_PACKET = 256
MAX_BATCH_BYTES = 64 * 1024 * 1024

_PCAP_MAGICS = {
    # magic as read little-endian -> (big_endian, nanosecond, record header bytes)
    0xA1B2C3D4: (False, False, 16),
    0xD4C3B2A1: (True, False, 16),
    0xA1B23C4D: (False, True, 16),
    0x4D3CB2A1: (True, True, 16),
    # Alexey Kuznetzov's modified pcap: 8 more bytes per record header.
    0xA1B2CD34: (False, False, 24),
    0x34CDB2A1: (True, False, 24),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


class Capture:
    """An open capture: iterate ``batches()``, then read the summary attributes.

    Attributes:
      path: the file path, or a name for a stream.
      format: "pcap" or "pcapng", with "+gzip" appended when compressed.
      link_types: LINKTYPE_* number -> packets read with it.
      packets_read: packets handed out so far.
      warnings: problems that did not stop reading (cut-off last record, link types
        not decoded, packets of undefined interfaces, ...), each naming the offset.
      error: None, or why the capture could not be read to its end (a corrupt
        record or block); the packets before it were still handed out.
    """

    def __init__(
        self,
        file: str | os.PathLike | BinaryIO,
        batch_packets: int = 65536,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        max_caplen: int = MAX_CAPLEN,
    ):
        if batch_packets < 1:
            raise ValueError(f"batch_packets must be positive, got {batch_packets}")
        if isinstance(file, (str, os.PathLike)):
            self.path = os.fspath(file)
        else:
            self.path = str(getattr(file, "name", "<stream>"))
        self.batch_packets = batch_packets
        self.max_caplen = max_caplen
        self.link_types: dict[int, int] = {}
        self.packets_read = 0
        self.warnings: list[str] = []
        self.error: str | None = None
        self._started = False
        self._batch_bytes = max(
            min(batch_packets * _INITIAL_BYTES_PER_PACKET, MAX_BATCH_BYTES),
            max_caplen,
        )

        source, compressed, self._owned = open_source(file, self.path)
        try:
            # The window must hold the largest record parsed whole.
            window_bytes = max(window_bytes, max_caplen + _MIN_WINDOW_SLACK)
            self._max_block_len = min(MAX_BLOCK_LEN, window_bytes - 4096)
            self._window = ByteWindow(source, window_bytes)
            self._compressed = compressed
            self._detect_format()
        except BaseException:
            self.close()
            raise

    # -- context manager -------------------------------------------------------

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file if the capture opened it (streams passed in stay open)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    # -- format ----------------------------------------------------------------

    def _fail(self, offset: int, message: str) -> CaptureFormatError:
        return CaptureFormatError(f"{self.path}: offset {offset}: {message}")

    def _detect_format(self) -> None:
        window = self._window
        window.ensure(4)
        head = bytes(window.buf[window.start : window.start + min(window.available, 4)])
        suffix = "+gzip" if self._compressed else ""
        if len(head) < 4:
            raise self._fail(
                0,
                f"expected a pcap or pcapng header, found only {len(head)} bytes "
                f"({head.hex() or 'empty file'})",
            )
        if head == _PCAPNG_SHB:
            self.format = "pcapng" + suffix
            self._interfaces: list[tuple[int, int, int, int, int, int]] = []
            self._interface_arrays = None
            self._big_endian = False
            self._undefined_interface = np.zeros(1, dtype=np.int64)
            return
        magic = struct.unpack("<I", head)[0]
        if magic not in _PCAP_MAGICS:
            raise self._fail(
                0,
                "expected a pcap magic (a1b2c3d4, a1b23c4d or swapped) or a pcapng "
                f"section header (0a0d0d0a), found {head.hex()}",
            )
        self.format = "pcap" + suffix
        self._big_endian, nanosecond, self._record_header_len = _PCAP_MAGICS[magic]
        if not window.ensure(24):
            raise self._fail(0, f"pcap file header cut off at {window.available} bytes")
        header = bytes(window.buf[window.start : window.start + 24])
        order = ">" if self._big_endian else "<"
        _, major, minor, _, _, snaplen, network = struct.unpack(
            order + "IHHiIII", header
        )
        if major != 2:
            self.warnings.append(
                f"{self.path}: offset 4: pcap version {major}.{minor}, expected 2.4"
            )
        self._frac_to_ns = 1 if nanosecond else 1000
        self._pcap_link_type = network & 0xFFFF
        self._snaplen = snaplen
        window.start += 24

    # -- reading ---------------------------------------------------------------

    def _new_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            name: np.empty(self.batch_packets, dtype=PACKET_COLUMNS[name][0])
            for name in walk.WALK_COLUMNS
        }
        arrays["data"] = np.empty(self._batch_bytes, dtype=np.uint8)
        return arrays

    def _finish_batch(self, arrays: dict[str, np.ndarray], n: int, used: int):
        columns = {name: arrays[name][:n] for name in walk.WALK_COLUMNS}
        for name, (dtype, shape) in PACKET_COLUMNS.items():
            if name not in columns:
                columns[name] = np.empty((n, *shape), dtype=dtype)
        batch = PacketBatch(**columns, data=arrays["data"][:used])
        decode.decode_packets(
            batch.data,
            batch.data_start,
            batch.caplen,
            batch.link_type,
            batch.vlan_id,
            batch.net_offset,
            batch.ip_version,
            batch.src_addr,
            batch.dst_addr,
            batch.protocol,
            batch.l4_offset,
            batch.src_port,
            batch.dst_port,
            batch.tcp_flags,
            batch.ip_id,
            batch.frag_offset,
            batch.more_fragments,
            batch.is_fragment,
        )
        kinds, counts = np.unique(batch.link_type, return_counts=True)
        for kind, count in zip(kinds.tolist(), counts.tolist(), strict=True):
            self.link_types[kind] = self.link_types.get(kind, 0) + count
        self.packets_read += n
        return batch

    def batches(self) -> Iterator[PacketBatch]:
        """Yields the capture's packets as ``PacketBatch``es of at most
        ``batch_packets`` packets each, in capture order. May be called once."""
        if self._started:
            raise RuntimeError(f"{self.path}: batches() may only be iterated once")
        self._started = True
        started_at = time.monotonic()
        try:
            yield from self._read_batches()
        except CaptureFormatError as err:
            self.error = str(err)
        finally:
            self._add_end_warnings()
            elapsed = max(time.monotonic() - started_at, 1e-9)
            logging.log(
                logging.INFO if elapsed > 1.0 else logging.DEBUG,
                "%s: %d packets in %.2f s (%.0f packets/s)",
                self.path,
                self.packets_read,
                elapsed,
                self.packets_read / elapsed,
            )

    def _read_batches(self) -> Iterator[PacketBatch]:
        window = self._window
        arrays = self._new_arrays()
        n = 0
        used = 0
        is_pcapng = self.format.startswith("pcapng")
        while True:
            if is_pcapng:
                status, pos, n, used = self._walk_pcapng(arrays, n, used)
            else:
                status, pos, n, used = walk.walk_pcap(
                    window.buf,
                    window.start,
                    window.end,
                    window.base,
                    self._big_endian,
                    self._frac_to_ns,
                    self._record_header_len,
                    self.max_caplen,
                    self._pcap_link_type,
                    arrays["ts_ns"],
                    arrays["caplen"],
                    arrays["wirelen"],
                    arrays["link_type"],
                    arrays["record_offset"],
                    arrays["data_start"],
                    n,
                    arrays["data"],
                    used,
                )
            window.start = pos

            if status == walk.BATCH_FULL:
                yield self._finish_batch(arrays, n, used)
                arrays, n, used = self._new_arrays(), 0, 0
            elif status == walk.DATA_FULL:
                if n < self.batch_packets // 2 and self._batch_bytes < MAX_BATCH_BYTES:
                    self._batch_bytes = min(self._batch_bytes * 2, MAX_BATCH_BYTES)
                    grown = np.empty(self._batch_bytes, dtype=np.uint8)
                    grown[:used] = arrays["data"][:used]
                    arrays["data"] = grown
                else:
                    yield self._finish_batch(arrays, n, used)
                    arrays, n, used = self._new_arrays(), 0, 0
            elif status == walk.NEED_MORE:
                if window.eof:
                    if window.available:
                        self._warn_cut_off()
                    break
                if window.source.live and n:
                    yield self._finish_batch(arrays, n, used)
                    arrays, n, used = self._new_arrays(), 0, 0
                if window.fill() == 0 and not window.eof:
                    raise self._fail(
                        window.offset,
                        f"a record larger than the {window.buf.size}-byte read "
                        "window; open the capture with a larger window_bytes",
                    )
            elif status == walk.SPECIAL_BLOCK:
                self._read_special_block()
            elif status == walk.SKIP_BLOCK:
                block_offset = window.offset
                order = ">" if self._big_endian else "<"
                head = bytes(window.buf[window.start : window.start + 8])
                block_type, block_len = struct.unpack(order + "II", head)
                window.skip_to(block_offset + block_len)
                if window.skip_short:
                    self.warnings.append(
                        f"{self.path}: offset {block_offset}: file ends inside a "
                        f"pcapng block of type {block_type:#x} that claims "
                        f"{block_len} bytes; skipped to the end"
                    )
                    break
            elif status == walk.BAD_CAPLEN:
                if n:
                    yield self._finish_batch(arrays, n, used)
                    n = 0
                raise self._bad_record(window.offset, is_pcapng)
            else:  # BAD_BLOCK
                if n:
                    yield self._finish_batch(arrays, n, used)
                    n = 0
                raise self._bad_block(window.offset)
        if n:
            yield self._finish_batch(arrays, n, used)

    def _walk_pcapng(self, arrays, n, used):
        window = self._window
        if self._interface_arrays is None:
            columns = list(zip(*self._interfaces, strict=True)) or [()] * 6
            self._interface_arrays = [
                np.array(columns[0], dtype=np.int64),
                np.array(columns[1], dtype=np.int64),
                np.array(columns[2], dtype=np.int64),
                np.array(columns[3], dtype=np.int64),
                np.array(columns[4], dtype=np.int64),
                np.array(columns[5], dtype=np.int64),
            ]
        return walk.walk_pcapng(
            window.buf,
            window.start,
            window.end,
            window.base,
            self._big_endian,
            *self._interface_arrays,
            self.max_caplen,
            self._max_block_len,
            arrays["ts_ns"],
            arrays["caplen"],
            arrays["wirelen"],
            arrays["link_type"],
            arrays["record_offset"],
            arrays["data_start"],
            n,
            arrays["data"],
            used,
            self._undefined_interface,
        )

    # -- pcapng blocks parsed in Python ---------------------------------------

    def _read_special_block(self) -> None:
        """Parses the section header or interface description block at the window
        start, and consumes it."""
        window = self._window
        offset = window.offset
        window.ensure(12)
        head = bytes(window.buf[window.start : window.start + 12])
        if head[:4] == _PCAPNG_SHB:
            if len(head) < 12:
                raise self._fail(offset, "section header block cut off")
            order_magic = struct.unpack("<I", head[8:12])[0]
            if order_magic == _BYTE_ORDER_MAGIC:
                self._big_endian = False
            elif order_magic == 0x4D3C2B1A:
                self._big_endian = True
            else:
                raise self._fail(
                    offset + 8,
                    "expected the pcapng byte-order magic 1a2b3c4d, found "
                    f"{head[8:12].hex()}",
                )
            self._interfaces = []
            self._interface_arrays = None
        order = ">" if self._big_endian else "<"
        block_type, block_len = struct.unpack(order + "II", head[:8])
        if block_len < 12 or block_len % 4 or block_len > self._max_block_len:
            raise self._fail(
                offset,
                f"pcapng block of type {block_type:#x} claims length {block_len}, "
                f"expected a multiple of 4 between 12 and {self._max_block_len}",
            )
        if not window.ensure(block_len):
            window.start = window.end
            self.warnings.append(
                f"{self.path}: offset {offset}: file ends inside a pcapng block of "
                f"type {block_type:#x} that claims {block_len} bytes"
            )
            return
        body = bytes(window.buf[window.start : window.start + block_len])
        trailer = struct.unpack(order + "I", body[-4:])[0]
        if trailer != block_len:
            raise self._fail(
                offset,
                f"pcapng block length {block_len} does not match its trailing "
                f"copy {trailer}",
            )
        if block_type == 1:
            self._add_interface(body, order, offset)
        elif len(body) >= 16:
            major, minor = struct.unpack(order + "HH", body[12:16])
            if major != 1:
                self.warnings.append(
                    f"{self.path}: offset {offset + 12}: pcapng version "
                    f"{major}.{minor}, expected 1.0"
                )
        window.start += block_len

    def _add_interface(self, body: bytes, order: str, offset: int) -> None:
        if len(body) < 20:
            raise self._fail(offset, f"interface block too short ({len(body)} bytes)")
        link_type, _, snaplen = struct.unpack(order + "HHI", body[8:16])
        multiplier, divisor, shift = 1000, 1, -1  # default: microseconds
        offset_ns = 0
        pos = 16
        while pos + 4 <= len(body) - 4:
            code, length = struct.unpack(order + "HH", body[pos : pos + 4])
            if code == 0:
                break
            if pos + 4 + length > len(body) - 4:
                self.warnings.append(
                    f"{self.path}: offset {offset + pos}: interface option {code} "
                    f"claims {length} bytes, past the end of its block; ignored"
                )
                break
            value = body[pos + 4 : pos + 4 + length]
            if code == 9 and length >= 1:  # if_tsresol
                resolution = value[0]
                if resolution & 0x80:
                    multiplier, divisor, shift = 1, 1, resolution & 0x7F
                elif resolution <= 9:
                    multiplier, divisor, shift = 10 ** (9 - resolution), 1, -1
                elif resolution <= 18:
                    multiplier, divisor, shift = 1, 10 ** (resolution - 9), -1
                else:
                    self.warnings.append(
                        f"{self.path}: offset {offset}: if_tsresol {resolution} "
                        "is out of range; microseconds assumed"
                    )
            elif code == 14 and length >= 8:  # if_tsoffset, seconds
                offset_ns = struct.unpack(order + "q", value[:8])[0] * 1_000_000_000
            pos += 4 + ((length + 3) & ~3)
        self._interfaces.append(
            (link_type, snaplen, multiplier, divisor, shift, offset_ns)
        )
        self._interface_arrays = None

    # -- messages --------------------------------------------------------------

    def _warn_cut_off(self) -> None:
        window = self._window
        self.warnings.append(
            f"{self.path}: offset {window.offset}: file ends inside a record "
            f"({window.available} bytes of it present); every whole packet before "
            "it was read"
        )

    def _bad_record(self, offset: int, is_pcapng: bool) -> CaptureFormatError:
        window = self._window
        head = bytes(window.buf[window.start : window.start + 28])
        order = ">" if self._big_endian else "<"
        if not is_pcapng:
            caplen = struct.unpack(order + "I", head[8:12])[0]
        elif struct.unpack(order + "I", head[:4])[0] == walk.PCAPNG_SPB:
            caplen = struct.unpack(order + "I", head[8:12])[0]  # the wirelen
        else:
            caplen = struct.unpack(order + "I", head[20:24])[0]
        return self._fail(
            offset,
            f"record claims caplen {caplen} bytes, more than the {self.max_caplen} "
            "allowed; the file is damaged here",
        )

    def _bad_block(self, offset: int) -> CaptureFormatError:
        window = self._window
        head = bytes(window.buf[window.start : window.start + 8])
        order = ">" if self._big_endian else "<"
        block_type, block_len = struct.unpack(order + "II", head)
        return self._fail(
            offset,
            f"pcapng block of type {block_type:#x} claims length {block_len}, which "
            "does not fit its contents (or is not a multiple of 4); the file is "
            "damaged here",
        )

    def _add_end_warnings(self) -> None:
        source = self._window.source
        if isinstance(source, GzipSource) and source.truncated:
            self.warnings.append(
                f"{self.path}: offset {source.offset}: the gzip stream ends early "
                "(cut-off compressed file)"
            )
        if self.format.startswith("pcapng") and self._undefined_interface[0]:
            self.warnings.append(
                f"{self.path}: {int(self._undefined_interface[0])} packets name an "
                "interface that no interface block defined; skipped"
            )
        for kind, count in sorted(self.link_types.items()):
            if kind not in DECODED:
                self.warnings.append(
                    f"{self.path}: link type {kind} ({link_type_name(kind)}): "
                    f"{count} packets not decoded past the link layer"
                )


def open_capture(
    file: str | os.PathLike | BinaryIO,
    batch_packets: int = 65536,
    *,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    max_caplen: int = MAX_CAPLEN,
) -> Capture:
    """Opens a pcap or pcapng capture (optionally gzip-compressed) for reading.

    The format is detected from the first bytes, never from the file name. Memory
    stays bounded whatever the file size: bytes are read through a sliding window
    of ``window_bytes`` bytes and handed out in batches.

    What is read: pcap in either byte order with microsecond or nanosecond
    timestamps; pcapng with several sections (each in its own byte order) and
    interfaces (each with its own link type, ``if_tsresol`` and ``if_tsoffset``),
    from enhanced, simple (no timestamp: ``ts_ns`` 0) and obsolete packet blocks,
    other blocks skipped; either one gzip-compressed. Each packet's network header
    is found behind Ethernet (802.1Q/QinQ tags, LLC/SNAP, PPPoE, MPLS and a few
    vendor shims), raw IP, Linux SLL/SLL2, BSD loopback, PPP, Cisco HDLC, Frame
    Relay, FDDI, ARCNET, unencrypted 802.11 data (bare, radiotap, Prism, PPI), NFLOG
    and IPNET. The outermost IPv4 header (options skipped) or IPv6 header
    (extension headers walked, AH included, up to ESP or the transport header),
    the transport ports and the TCP flags are decoded as far as the captured
    bytes go. Packets of other link types keep their bytes and record fields;
    their count is reported in ``capture.warnings``.

    Example::

        from stfe_jax.capture import open_capture

        with open_capture("trace.pcap.gz") as capture:
            for batch in capture.batches():  # PacketBatch, see columns.py
                tcp = batch.protocol == 6
                print(len(batch), batch.src_port[tcp][:5], batch.ts_ns[:1])
        print(capture.format, capture.link_types, capture.packets_read)
        print(capture.warnings, capture.error)

    Args:
      file: a path, or a binary file object (a pipe or socket is read as bytes
        arrive, and a batch is handed out whenever the bytes read so far end).
      batch_packets: most packets per batch (a batch also ends when its captured
        bytes reach 64 MiB).
      window_bytes: bytes of the file held at once (at least ``max_caplen`` +
        64 KiB); pcapng blocks larger than this (less 4 KiB) are an error.
      max_caplen: largest captured length (bytes) a record may claim; a larger
        one means the file is damaged.

    Returns:
      A ``Capture``: iterate ``capture.batches()`` once; afterwards read
      ``capture.warnings`` (problems that did not stop reading, such as a cut-off
      last record or link types not decoded), ``capture.error`` (None, or why the
      file could not be read to its end: every packet before that point was still
      handed out), ``capture.format``, ``capture.link_types`` and
      ``capture.packets_read``. Use it as a context manager, or call ``close()``.

    Raises:
      CaptureFormatError: the file is empty or not pcap/pcapng (the message names
        the file, the offset and the bytes found).
      OSError: the file cannot be opened.
    """
    return Capture(
        file, batch_packets, window_bytes=window_bytes, max_caplen=max_caplen
    )
