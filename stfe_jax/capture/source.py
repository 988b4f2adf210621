"""Byte sources for the reader: a plain file or stream, or a gzip stream over one.

The reader never holds a whole capture in memory: it pulls bytes into a fixed-size
window (``ByteWindow``) that slides over the (decompressed) stream.
"""

from __future__ import annotations

import os
import zlib
from typing import BinaryIO

import numpy as np

from stfe_jax.capture.errors import CaptureFormatError

GZIP_MAGIC = b"\x1f\x8b"
# Compressed bytes fed to zlib per step.
_GZIP_INPUT_CHUNK = 1 << 20
# Most bytes taken from a live stream (pipe, socket) per read1 / readinto1.
_LIVE_READ_BYTES = 1 << 20
_READINTO1_BYTES = 4096


class RawSource:
    """Bytes of a file object, with the first bytes already read put back in front.

    Regular files are read with ``readinto`` until the buffer is full; streams (pipes,
    sockets) with ``read1`` (or ``readinto1``) where available, so that a live
    capture yields packets as soon as they arrive.
    """

    def __init__(self, fileobj: BinaryIO, prefix: bytes, live: bool):
        self._fileobj = fileobj
        self._prefix = prefix
        self.live = live
        self.offset = 0  # bytes handed out so far

    def readinto(self, view: memoryview) -> int:
        """Fills the start of ``view``; returns the number of bytes, 0 at the end."""
        if self._prefix:
            n = min(len(self._prefix), len(view))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            self.offset += n
            return n
        if self.live and hasattr(self._fileobj, "read1"):
            # read1 returns the bytes already buffered without waiting for more.
            chunk = self._fileobj.read1(min(len(view), _LIVE_READ_BYTES))
            n = len(chunk)
            view[:n] = chunk
        elif self.live and hasattr(self._fileobj, "readinto1"):
            # Asked for more than its buffer holds, readinto1 may block on a
            # second read although it already has bytes: ask for at most the
            # smallest buffer a pipe gets (its st_blksize, one page).
            n = self._fileobj.readinto1(view[:_READINTO1_BYTES])
        elif hasattr(self._fileobj, "readinto"):
            n = self._fileobj.readinto(view)
        else:
            chunk = self._fileobj.read(len(view))
            n = len(chunk)
            view[:n] = chunk
        n = n or 0
        self.offset += n
        return n


class GzipSource:
    """The decompressed bytes of a gzip stream (several members are concatenated).

    Attributes:
      truncated: set at the end when the compressed stream stopped inside a member.
    """

    def __init__(self, raw: RawSource, name: str):
        self._raw = raw
        self._name = name
        self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._pending = b""  # compressed bytes not yet given to zlib
        self._raw_done = False
        self.live = raw.live
        self.truncated = False
        self.offset = 0  # decompressed bytes handed out so far

    def _pull_compressed(self) -> None:
        buffer = bytearray(_GZIP_INPUT_CHUNK)
        n = self._raw.readinto(memoryview(buffer))
        if n == 0:
            self._raw_done = True
        self._pending += bytes(buffer[:n])

    def readinto(self, view: memoryview) -> int:
        """Fills the start of ``view`` with decompressed bytes; 0 at the end."""
        while True:
            if self._decompressor.eof:
                rest = self._decompressor.unused_data + self._pending
                self._pending = b""
                if not rest and not self._raw_done:
                    self._pull_compressed()
                    rest = self._pending
                    self._pending = b""
                if not rest:
                    return 0
                if not rest.startswith(GZIP_MAGIC):
                    # Trailing bytes after the last member (padding): ignored, as
                    # gzip(1) does.
                    return 0
                self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
                self._pending = rest
            if not self._pending and not self._raw_done:
                self._pull_compressed()
            data_in = self._pending
            try:
                out = self._decompressor.decompress(data_in, len(view))
            except zlib.error as err:
                raise CaptureFormatError(
                    f"{self._name}: compressed offset about {self._raw.offset}: "
                    f"gzip data is corrupt ({err})"
                ) from err
            self._pending = self._decompressor.unconsumed_tail
            if out:
                view[: len(out)] = out
                self.offset += len(out)
                return len(out)
            if self._raw_done and not self._pending and not self._decompressor.eof:
                self.truncated = True
                return 0


class ByteWindow:
    """A sliding window of a byte stream held in one preallocated numpy buffer.

    ``buf[start:end]`` holds stream bytes ``base + start .. base + end``. ``fill``
    moves the unread bytes to the front and reads more behind them.
    """

    def __init__(self, source: RawSource | GzipSource, capacity: int):
        self.source = source
        self.buf = np.empty(capacity, dtype=np.uint8)
        self.base = 0
        self.start = 0
        self.end = 0
        self.eof = False
        self._pending_skip = 0

    @property
    def available(self) -> int:
        """Bytes in the window not yet consumed."""
        return self.end - self.start

    @property
    def offset(self) -> int:
        """Stream offset of the first unconsumed byte."""
        return self.base + self.start

    def fill(self) -> int:
        """Reads more bytes behind the unread ones; returns how many were added."""
        if self.start:
            remaining = self.end - self.start
            self.buf[:remaining] = self.buf[self.start : self.end]
            self.base += self.start
            self.start = 0
            self.end = remaining
        view = memoryview(self.buf)
        added = 0
        while self.end < self.buf.size and not self.eof:
            n = self.source.readinto(view[self.end :])
            if n == 0:
                self.eof = True
                break
            if self._pending_skip:
                dropped = min(n, self._pending_skip)
                self._pending_skip -= dropped
                self.base += dropped
                n -= dropped
                if n:
                    self.buf[self.end : self.end + n] = self.buf[
                        self.end + dropped : self.end + dropped + n
                    ]
                if self._pending_skip:
                    continue
            self.end += n
            added += n
            if self.source.live and added:
                break
        return added

    def ensure(self, size: int) -> bool:
        """Makes ``size`` unread bytes available; False when the stream ends first."""
        if size > self.buf.size:
            raise ValueError(f"{size} bytes do not fit a {self.buf.size}-byte window")
        while self.available < size:
            if self.eof:
                return False
            self.fill()
        return True

    def skip_to(self, offset: int) -> None:
        """Consumes the stream up to ``offset``, reading and dropping bytes past
        the window when the offset lies beyond it."""
        if offset <= self.base + self.end:
            self.start = offset - self.base
            return
        self._pending_skip = offset - (self.base + self.end)
        self.base = self.base + self.end
        self.start = 0
        self.end = 0
        while self._pending_skip and not self.eof:
            self.fill()

    @property
    def skip_short(self) -> int:
        """Bytes of a skip that the stream ended before reaching."""
        return self._pending_skip


def open_source(
    file: str | os.PathLike | BinaryIO, name: str
) -> tuple[RawSource | GzipSource, bool, BinaryIO | None]:
    """Opens ``file`` (a path or a binary file object) as a byte source.

    Returns the source, whether it is gzip-compressed, and the file object that the
    caller must close (None when the caller passed a file object in).
    """
    owned = None
    if isinstance(file, (bytes, bytearray, memoryview)):
        raise TypeError(
            "open a capture by path or binary file object; wrap bytes in io.BytesIO"
        )
    if isinstance(file, str) or hasattr(file, "__fspath__"):
        fileobj = open(file, "rb")  # noqa: SIM115 - closed by the Capture
        owned = fileobj
        live = False
    else:
        fileobj = file
        live = not _is_regular_file(fileobj)
    try:
        prefix = _read_prefix(fileobj, 2, live)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    raw = RawSource(fileobj, prefix, live)
    if prefix == GZIP_MAGIC:
        return GzipSource(raw, name), True, owned
    return raw, False, owned


def _read_prefix(fileobj: BinaryIO, size: int, live: bool) -> bytes:
    prefix = b""
    while len(prefix) < size:
        chunk = fileobj.read(size - len(prefix))
        if not chunk:
            break
        prefix += chunk
    return prefix


def _is_regular_file(fileobj: BinaryIO) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, ValueError, OSError):
        return False
