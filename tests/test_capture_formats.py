"""Capture formats: pcap in both byte orders and resolutions, pcapng sections and
blocks, gzip, streams, and damaged files (cut off, lying lengths, garbage)."""

import gzip
import io
import os
import struct
import threading

import numpy as np
import pytest

from stfe_jax.capture import CaptureFormatError, open_capture
from stfe_jax.synth import packets as pk
from stfe_jax.synth import writers

T0_NS = 1_700_000_000_123_456_789


def udp_frame(index: int) -> bytes:
    """An Ethernet/IPv4/UDP frame whose source port encodes ``index``."""
    segment = pk.udp(
        src_port=1000 + index,
        dst_port=53,
        payload=bytes([index % 256]) * (index % 7),
        src_ip="10.0.0.1",
        dst_ip="10.0.0.2",
    )
    return pk.ethernet(
        pk.ipv4(segment, src="10.0.0.1", dst="10.0.0.2", protocol=pk.IPPROTO_UDP),
        ethertype=pk.ETHERTYPE_IPV4,
    )


def read_all(file, **kwargs):
    """Reads a capture; returns (capture, list of batches)."""
    with open_capture(file, **kwargs) as capture:
        batches = list(capture.batches())
    return capture, batches


def column(batches, name):
    return np.concatenate([getattr(batch, name) for batch in batches])


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, big_endian, nanosecond):
    path = tmp_path / "trace.pcap"
    frames = [udp_frame(i) for i in range(5)]
    records = [(T0_NS + i * 1_000_001, frame) for i, frame in enumerate(frames)]
    writers.write_pcap(path, records, nanosecond=nanosecond, big_endian=big_endian)

    capture, batches = read_all(path)

    assert capture.format == "pcap"
    assert capture.error is None and capture.warnings == []
    assert capture.packets_read == 5
    assert capture.link_types == {1: 5}
    expected_ts = np.array([ts for ts, _ in records])
    if not nanosecond:
        expected_ts = expected_ts // 1000 * 1000
    np.testing.assert_array_equal(column(batches, "ts_ns"), expected_ts)
    np.testing.assert_array_equal(column(batches, "src_port"), 1000 + np.arange(5))
    for i, frame in enumerate(frames):
        assert batches[0].packet_bytes(i).tobytes() == frame
    assert batches[0].record_offset[0] == 24


def test_pcapng_sections_interfaces_and_resolutions(tmp_path):
    """Two sections of opposite byte order; interfaces with different link types
    and if_tsresol (microseconds, nanoseconds, 2**-20 s); an unknown block."""
    ethernet = udp_frame(1)
    raw = pk.ipv4(
        pk.tcp(
            src_port=4321, dst_port=443, flags="S", src_ip="1.2.3.4", dst_ip="5.6.7.8"
        ),
        src="1.2.3.4",
        dst="5.6.7.8",
        protocol=pk.IPPROTO_TCP,
    )
    first = writers.PcapngSection(
        interfaces=[
            writers.PcapngInterface(link_type=1),
            writers.PcapngInterface(link_type=101, if_tsresol=9),
        ],
        packets=[(0, T0_NS, ethernet), (1, T0_NS + 7, raw)],
        extra_blocks=[(0x0BAD, b"unknown block body")],
    )
    second = writers.PcapngSection(
        interfaces=[writers.PcapngInterface(link_type=228, if_tsresol=0x80 | 20)],
        packets=[(0, T0_NS + 2**-20 * 1e9 * 3 // 1, raw)],
        big_endian=True,
    )
    path = tmp_path / "trace.pcapng"
    writers.write_pcapng(path, [first, second])

    capture, batches = read_all(path)

    assert capture.format == "pcapng"
    assert capture.error is None and capture.warnings == []
    assert capture.link_types == {1: 1, 101: 1, 228: 1}
    np.testing.assert_array_equal(column(batches, "link_type"), [1, 101, 228])
    ts = column(batches, "ts_ns")
    assert ts[0] == T0_NS // 1000 * 1000  # microseconds by default
    assert ts[1] == T0_NS + 7  # if_tsresol 9: nanoseconds
    assert abs(ts[2] - (T0_NS + 3 * 2**-20 * 1e9)) < 2**-20 * 1e9  # 2**-20 s units
    np.testing.assert_array_equal(column(batches, "ip_version"), [4, 4, 4])
    np.testing.assert_array_equal(column(batches, "net_offset"), [14, 0, 0])
    np.testing.assert_array_equal(column(batches, "dst_port"), [53, 443, 443])


@pytest.mark.parametrize("packet_block", ["spb", "pb"])
def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path, packet_block):
    frames = [udp_frame(i) for i in range(3)]
    section = writers.PcapngSection(
        interfaces=[writers.PcapngInterface(link_type=1)],
        packets=[(0, T0_NS + i * 1000, frame) for i, frame in enumerate(frames)],
        packet_block=packet_block,
    )
    path = tmp_path / "trace.pcapng"
    writers.write_pcapng(path, [section])

    capture, batches = read_all(path)

    assert capture.packets_read == 3 and capture.error is None
    np.testing.assert_array_equal(column(batches, "src_port"), [1000, 1001, 1002])
    np.testing.assert_array_equal(column(batches, "caplen"), [len(f) for f in frames])
    if packet_block == "pb":
        assert column(batches, "ts_ns")[2] == T0_NS // 1000 * 1000 + 2000
    else:
        assert (column(batches, "ts_ns") == 0).all()  # SPBs carry no timestamp


def test_pcapng_interface_tsoffset_and_snaplen(tmp_path):
    """if_tsoffset (seconds) is added; a pcapng interface option is parsed."""
    order = "<"

    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        return (
            struct.pack(order + "II", kind, 12 + len(body))
            + body
            + struct.pack(order + "I", 12 + len(body))
        )

    shb = block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    options = struct.pack(order + "HHq", 14, 8, 100) + struct.pack(order + "HH", 0, 0)
    idb = block(1, struct.pack(order + "HHI", 1, 0, 0) + options)
    frame = udp_frame(3)
    epb = block(
        6, struct.pack(order + "IIIII", 0, 0, 5_000_000, len(frame), len(frame)) + frame
    )
    capture, batches = read_all(io.BytesIO(shb + idb + epb))
    assert capture.error is None
    assert batches[0].ts_ns[0] == 5_000_000 * 1000 + 100 * 1_000_000_000


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_is_detected_from_content(tmp_path, kind):
    frames = [udp_frame(i) for i in range(4)]
    path = tmp_path / "no_extension_hint"
    if kind == "pcap":
        writers.write_pcap(path, [(T0_NS, f) for f in frames], gzip=True)
    else:
        section = writers.PcapngSection(
            interfaces=[writers.PcapngInterface()],
            packets=[(0, T0_NS, f) for f in frames],
        )
        writers.write_pcapng(path, [section], gzip=True)

    capture, batches = read_all(path)

    assert capture.format == kind + "+gzip"
    assert capture.packets_read == 4 and capture.error is None
    assert capture.warnings == []
    np.testing.assert_array_equal(column(batches, "src_port"), 1000 + np.arange(4))


def test_cut_off_gzip_keeps_whole_packets_and_warns(tmp_path):
    raw = io.BytesIO()
    writers.write_pcap(raw, [(T0_NS, udp_frame(i)) for i in range(2000)])
    compressed = gzip.compress(raw.getvalue())
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(compressed[: len(compressed) // 2])

    capture, batches = read_all(path)

    assert 0 < capture.packets_read < 2000
    assert capture.error is None
    assert any("gzip stream ends early" in w for w in capture.warnings)
    np.testing.assert_array_equal(
        column(batches, "src_port"), 1000 + np.arange(capture.packets_read)
    )


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcap+gzip"])
def test_small_window_and_batches_cover_every_packet_once(tmp_path, kind):
    """A file several times larger than the read window, read in small batches."""
    path = tmp_path / "trace"
    count = 12000  # about 730 KB, over twice the window
    records = [(T0_NS + i, udp_frame(i)) for i in range(count)]
    if kind == "pcapng":
        section = writers.PcapngSection(
            interfaces=[writers.PcapngInterface()],
            packets=[(0, *record) for record in records],
        )
        writers.write_pcapng(path, [section])
    else:
        writers.write_pcap(path, records, gzip=kind.endswith("gzip"))
    assert path.stat().st_size > 600_000 or kind == "pcap+gzip"  # gzip: smaller

    capture, batches = read_all(
        path, batch_packets=500, window_bytes=300_000, max_caplen=200_000
    )

    assert capture.error is None and capture.warnings == []
    assert all(len(batch) <= 500 for batch in batches)
    assert len(batches) == count // 500
    np.testing.assert_array_equal(
        column(batches, "src_port"), 1000 + np.arange(count) % 65536
    )
    expected_ts = (T0_NS + np.arange(count)) // 1000 * 1000  # microsecond files
    np.testing.assert_array_equal(column(batches, "ts_ns"), expected_ts)
    offsets = column(batches, "record_offset")
    assert (np.diff(offsets) > 16).all()


def test_many_batches_cover_every_packet_once(tmp_path):
    path = tmp_path / "trace.pcap"
    count = 1000
    writers.write_pcap(path, [(T0_NS + i, udp_frame(i)) for i in range(count)])

    capture, batches = read_all(path, batch_packets=64, window_bytes=1 << 16)

    assert all(len(batch) <= 64 for batch in batches)
    assert len(batches) == -(-count // 64)
    np.testing.assert_array_equal(column(batches, "src_port"), 1000 + np.arange(count))
    offsets = column(batches, "record_offset")
    assert offsets[0] == 24 and (np.diff(offsets) > 16).all()


class OnlyReadinto1:
    """A stream offering only ``read`` and ``readinto1`` (like a tee wrapper)."""

    def __init__(self, stream):
        self._stream = stream

    def seekable(self):
        return False

    def read(self, size=-1):
        return self._stream.read(size)

    def readinto1(self, view):
        return self._stream.readinto1(view)


@pytest.mark.parametrize("wrap", [False, True])
def test_stream_from_a_pipe_yields_packets_as_they_arrive(wrap):
    """A pipe is read incrementally: the first batch is handed out before the
    writer has finished."""
    buffer = io.BytesIO()
    writers.write_pcap(buffer, [(T0_NS, udp_frame(i)) for i in range(10)])
    content = buffer.getvalue()
    split = 24 + 3 * (16 + len(udp_frame(0)))  # header and three whole records
    read_fd, write_fd = os.pipe()
    second_half_sent = threading.Event()

    def writer():
        with os.fdopen(write_fd, "wb") as sink:
            sink.write(content[:split])
            sink.flush()
            second_half_sent.wait(timeout=10)
            sink.write(content[split:])

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb") as pipe:
        source = OnlyReadinto1(pipe) if wrap else pipe
        capture = open_capture(source)
        sizes = []
        for batch in capture.batches():
            sizes.append(len(batch))
            second_half_sent.set()
    thread.join(timeout=30)

    assert capture.packets_read == 10 and capture.error is None
    assert sizes[0] >= 1 and len(sizes) >= 2  # packets came before the end


def test_cut_off_file_keeps_every_whole_packet_and_names_the_offset(tmp_path):
    buffer = io.BytesIO()
    writers.write_pcap(buffer, [(T0_NS, udp_frame(i)) for i in range(5)])
    content = buffer.getvalue()
    fourth = 24 + sum(16 + len(udp_frame(i)) for i in range(3))
    path = tmp_path / "cut.pcap"
    path.write_bytes(content[: fourth + 20])  # inside the fourth record

    capture, batches = read_all(path)

    assert capture.packets_read == 3
    assert capture.error is None
    (warning,) = capture.warnings
    assert str(path) in warning and f"offset {fourth}" in warning
    np.testing.assert_array_equal(column(batches, "src_port"), [1000, 1001, 1002])


def test_record_larger_than_the_window_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "big.pcap"
    writers.write_pcap(path, [(T0_NS, bytes(150_000))], snaplen=262144)
    capture, _ = read_all(path, window_bytes=100_000, max_caplen=20_000)
    assert capture.packets_read == 0
    assert "offset 24" in capture.error and "150000" in capture.error


def test_absurd_caplen_is_an_error_not_an_allocation(tmp_path):
    buffer = io.BytesIO()
    writers.write_pcap(buffer, [(T0_NS, udp_frame(i)) for i in range(3)])
    content = bytearray(buffer.getvalue())
    record_len = 16 + len(udp_frame(0))
    second = 24 + record_len
    struct.pack_into("<I", content, second + 8, 0x7FFFFFF0)  # caplen of record 2
    path = tmp_path / "lying.pcap"
    path.write_bytes(bytes(content))

    capture, batches = read_all(path)

    assert capture.packets_read == 1
    assert capture.error is not None
    assert str(path) in capture.error and f"offset {second}" in capture.error
    assert str(0x7FFFFFF0) in capture.error


def test_pcapng_block_length_lie_is_an_error(tmp_path):
    section = writers.PcapngSection(
        interfaces=[writers.PcapngInterface()],
        packets=[(0, T0_NS, udp_frame(i)) for i in range(3)],
    )
    buffer = io.BytesIO()
    writers.write_pcapng(buffer, [section])
    content = bytearray(buffer.getvalue())
    # The second EPB: find the first EPB and step over it.
    first_epb = content.index(struct.pack("<I", 6))
    first_len = struct.unpack_from("<I", content, first_epb + 4)[0]
    second_epb = first_epb + first_len
    struct.pack_into("<I", content, second_epb + 4, 13)  # not a multiple of 4

    capture, _ = read_all(io.BytesIO(bytes(content)))

    assert capture.packets_read == 1
    assert f"offset {second_epb}" in capture.error


def test_huge_unknown_pcapng_block_running_past_the_end_is_skipped(tmp_path):
    section = writers.PcapngSection(
        interfaces=[writers.PcapngInterface()],
        packets=[(0, T0_NS, udp_frame(0))],
    )
    buffer = io.BytesIO()
    writers.write_pcapng(buffer, [section])
    valid = buffer.getvalue()
    content = valid + struct.pack("<II", 0x0BAD, 0xFFFFFFF0) + b"x" * 100

    capture, _ = read_all(io.BytesIO(content))

    assert capture.packets_read == 1
    assert capture.error is None
    (warning,) = capture.warnings
    assert f"offset {len(valid)}" in warning and str(0xFFFFFFF0) in warning


def test_packets_of_undefined_interface_are_skipped_with_a_warning():
    order = "<"

    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        total = 12 + len(body)
        return struct.pack(order + "II", kind, total) + body + struct.pack("<I", total)

    frame = udp_frame(0)
    content = (
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + block(1, struct.pack("<HHI", 1, 0, 0))
        + block(6, struct.pack("<IIIII", 5, 0, 0, len(frame), len(frame)) + frame)
        + block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame)
    )
    capture, _ = read_all(io.BytesIO(content))
    assert capture.packets_read == 1
    assert any("1 packets name an interface" in w for w in capture.warnings)


@pytest.mark.parametrize(
    "content, found",
    [
        (b"", "empty file"),
        (b"\x00\x01", "0001"),
        (b"GET / HTTP/1.1\r\n", "47455420"),
        (gzip.compress(b"hello world, not a capture"), "68656c6c"),
    ],
)
def test_garbage_is_a_capture_format_error_naming_file_offset_and_magic(
    tmp_path, content, found
):
    path = tmp_path / "garbage.bin"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError) as raised:
        open_capture(path)
    message = str(raised.value)
    assert str(path) in message and "offset 0" in message and found in message


def test_unknown_link_type_is_counted_and_reported(tmp_path):
    path = tmp_path / "user0.pcap"
    writers.write_pcap(path, [(T0_NS, b"\x08\x00" + bytes(30))] * 3, link_type=147)

    capture, batches = read_all(path)

    assert capture.link_types == {147: 3}
    assert (column(batches, "ip_version") == 0).all()
    (warning,) = capture.warnings
    assert "link type 147" in warning and "3 packets" in warning
