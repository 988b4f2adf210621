"""Tests of the pcap and pcapng writers: the bytes, and tshark reading them back."""

import gzip
import io
import shutil
import struct
import subprocess

import pytest

from stfe_jax.synth import packets as p
from stfe_jax.synth import writers as w

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def _tcp_frame(src: str, dst: str, dst_port: int, payload: bytes = b"") -> bytes:
    segment = p.tcp(
        src_port=1025,
        dst_port=dst_port,
        flags="S",
        payload=payload,
        src_ip=src,
        dst_ip=dst,
    )
    packet = p.ipv4(segment, src=src, dst=dst, protocol=p.IPPROTO_TCP)
    return p.ethernet(packet, ethertype=p.ETHERTYPE_IPV4)


def _tshark_fields(path, *fields: str) -> list[list[str]]:
    args = [TSHARK, "-r", str(path), "-T", "fields"]
    args += ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"]
    for field in fields:
        args += ["-e", field]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_pcap_header_and_records_microseconds():
    frame = _tcp_frame("10.0.0.1", "10.0.0.2", 80, payload=b"z" * 100)
    stream = io.BytesIO()
    count = w.write_pcap(
        stream,
        [(1_600_000_000_123_456_789, frame), (1_600_000_001_000_000_000, b"ab", 60)],
        snaplen=96,
    )
    assert count == 2
    data = stream.getvalue()
    magic, major, minor, _, _, snaplen, link_type = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, snaplen, link_type) == (0xA1B2C3D4, 2, 4, 96, 1)
    seconds, micros, caplen, wirelen = struct.unpack("<IIII", data[24:40])
    assert (seconds, micros, caplen, wirelen) == (1_600_000_000, 123_456, 96, 154)
    assert data[40:136] == frame[:96]
    seconds, micros, caplen, wirelen = struct.unpack("<IIII", data[136:152])
    assert (seconds, micros, caplen, wirelen) == (1_600_000_001, 0, 2, 60)
    assert data[152:] == b"ab"


def test_pcap_big_endian_nanosecond_gzip(tmp_path):
    path = tmp_path / "x.pcap.gz"
    w.write_pcap(
        path,
        [(5_000_000_007, b"abcd")],
        nanosecond=True,
        big_endian=True,
        gzip=True,
        link_type=101,
    )
    data = gzip.decompress(path.read_bytes())
    assert data[:4] == bytes.fromhex("a1b23c4d")
    assert struct.unpack(">I", data[20:24])[0] == 101
    assert struct.unpack(">IIII", data[24:40]) == (5, 7, 4, 4)


def test_pcap_rejects_negative_timestamp():
    with pytest.raises(ValueError, match="negative timestamp"):
        w.write_pcap(io.BytesIO(), [(-1, b"")])


def test_pcapng_blocks_parse_with_struct():
    section = w.PcapngSection(
        interfaces=[w.PcapngInterface(snaplen=8, if_tsresol=9, name="eth0")],
        packets=[(0, 1_500_000_000_000_000_001, b"0123456789", 64)],
        big_endian=True,
    )
    stream = io.BytesIO()
    assert w.write_pcapng(stream, [section]) == 1
    data = stream.getvalue()

    block_type, shb_len, magic = struct.unpack(">III", data[:12])
    assert (block_type, magic) == (0x0A0D0D0A, 0x1A2B3C4D)
    assert struct.unpack(">I", data[shb_len - 4 : shb_len])[0] == shb_len
    offset = shb_len
    block_type, idb_len, link_type, _, snaplen = struct.unpack(
        ">IIHHI", data[offset : offset + 16]
    )
    assert (block_type, link_type, snaplen) == (1, 1, 8)
    assert idb_len % 4 == 0
    assert b"eth0" in data[offset : offset + idb_len]
    offset += idb_len
    block_type, epb_len, interface_id, high, low, caplen, wirelen = struct.unpack(
        ">IIIIIII", data[offset : offset + 28]
    )
    assert (block_type, interface_id, caplen, wirelen) == (6, 0, 8, 64)
    assert (high << 32) | low == 1_500_000_000_000_000_001
    assert data[offset + 28 : offset + 36] == b"01234567"
    assert offset + epb_len == len(data)


@needs_tshark
def test_tshark_reads_pcap(tmp_path):
    path = tmp_path / "two.pcap"
    w.write_pcap(
        path,
        [
            (1_000_000_000, _tcp_frame("10.1.2.3", "10.9.9.9", 443)),
            (2_000_000_000, _tcp_frame("192.0.2.7", "10.9.9.9", 8080)),
        ],
    )
    rows = _tshark_fields(
        path, "ip.src", "tcp.dstport", "ip.checksum.status", "tcp.checksum.status"
    )
    # Checksum status 1 is "good" (0 bad, 2 unverified).
    assert rows == [["10.1.2.3", "443", "1", "1"], ["192.0.2.7", "8080", "1", "1"]]


@needs_tshark
@pytest.mark.parametrize("packet_block", ["epb", "pb"])
def test_tshark_reads_pcapng_sections(tmp_path, packet_block):
    path = tmp_path / "two.pcapng"
    sections = [
        w.PcapngSection(
            interfaces=[w.PcapngInterface(), w.PcapngInterface(if_tsresol=9)],
            packets=[
                (0, 1_000_000_000, _tcp_frame("10.0.0.1", "10.0.0.2", 22)),
                (1, 1_000_000_123, _tcp_frame("10.0.0.3", "10.0.0.4", 23)),
            ],
            packet_block=packet_block,
            extra_blocks=[(0x0BAD0BAD, b"skip")],
        ),
        w.PcapngSection(
            interfaces=[w.PcapngInterface()],
            packets=[(0, 3_000_000_000, _tcp_frame("10.0.0.5", "10.0.0.6", 25))],
            big_endian=True,
            packet_block=packet_block,
        ),
    ]
    assert w.write_pcapng(path, sections) == 3
    rows = _tshark_fields(path, "ip.src", "tcp.dstport", "frame.time_epoch")
    assert [row[:2] for row in rows] == [
        ["10.0.0.1", "22"],
        ["10.0.0.3", "23"],
        ["10.0.0.5", "25"],
    ]
    assert rows[1][2].startswith("1.000000123")
    assert rows[2][2].startswith("3.000000")


@needs_tshark
def test_tshark_reads_simple_packet_blocks(tmp_path):
    path = tmp_path / "spb.pcapng"
    frame = _tcp_frame("10.0.0.1", "10.0.0.2", 53)
    section = w.PcapngSection(
        interfaces=[w.PcapngInterface(snaplen=40)],
        packets=[(0, 0, frame)],
        packet_block="spb",
    )
    w.write_pcapng(path, [section])
    rows = _tshark_fields(path, "ip.src", "frame.cap_len", "frame.len")
    assert rows == [["10.0.0.1", "40", str(len(frame))]]


@needs_tshark
def test_tshark_reads_gzipped_pcapng_with_binary_time_resolution(tmp_path):
    path = tmp_path / "binary.pcapng.gz"
    section = w.PcapngSection(
        interfaces=[w.PcapngInterface(if_tsresol=0x80 | 20)],  # units of 2**-20 s
        packets=[
            (0, 1_500_000_000_500_000_000, _tcp_frame("10.0.0.8", "10.0.0.9", 80))
        ],
    )
    w.write_pcapng(path, [section], gzip=True)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    rows = _tshark_fields(path, "ip.src", "frame.time_epoch")
    assert rows[0][0] == "10.0.0.8"
    # 2**-20 s units: the half second is exact, within one unit (about 1 us).
    assert abs(float(rows[0][1]) - 1_500_000_000.5) < 2e-6
