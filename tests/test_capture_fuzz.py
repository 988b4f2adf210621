"""Damaged input never crashes or hangs the reader: mutated and cut captures give
packets, warnings or a ``CaptureFormatError``, nothing else."""

import gzip
import io
import random

import pytest

from stfe_jax.capture import CaptureFormatError, open_capture
from stfe_jax.synth import packets as pk
from stfe_jax.synth import writers


def sample_frames():
    frames = []
    for i in range(12):
        segment = pk.tcp(src_port=1000 + i, dst_port=80, flags="PA", payload=bytes(i))
        v4 = pk.ipv4(
            segment,
            src="10.0.0.1",
            dst="10.0.0.2",
            protocol=6,
            options=b"\x01" * (i % 3 * 4),
        )
        v6 = pk.ipv6(
            pk.udp(src_port=53, dst_port=2000 + i),
            src="2001:db8::1",
            dst="2001:db8::2",
            next_header=17,
            extension_headers=[(pk.IPPROTO_HOPOPTS, bytes(4))] * (i % 3),
        )
        frames.append(pk.ethernet(v4, ethertype=0x0800, vlan_ids=[5] * (i % 2)))
        frames.append(pk.ethernet(v6, ethertype=0x86DD))
    return frames


def sample_files():
    frames = sample_frames()
    pcap = io.BytesIO()
    writers.write_pcap(pcap, [(10**18 + i, f) for i, f in enumerate(frames)])
    pcapng = io.BytesIO()
    writers.write_pcapng(
        pcapng,
        [
            writers.PcapngSection(
                interfaces=[writers.PcapngInterface(), writers.PcapngInterface(101)],
                packets=[(0, 10**18 + i, f) for i, f in enumerate(frames)]
                + [(1, 10**18, f[14:]) for f in frames],
            ),
            writers.PcapngSection(
                interfaces=[writers.PcapngInterface(if_tsresol=9)],
                packets=[(0, 10**18, f) for f in frames],
                big_endian=True,
            ),
        ],
    )
    return {"pcap": pcap.getvalue(), "pcapng": pcapng.getvalue()}


def read_everything(content: bytes) -> int:
    """Reads a capture from bytes; returns packets read (-1: rejected at open)."""
    try:
        capture = open_capture(io.BytesIO(content), batch_packets=7)
    except CaptureFormatError:
        return -1
    with capture:
        for batch in capture.batches():
            assert len(batch) <= 7
            assert (batch.caplen <= 262144).all()
            for i in range(len(batch)):
                assert len(batch.packet_bytes(i)) == batch.caplen[i]
            assert (batch.net_offset < batch.caplen.astype(int) + 1).all()
            assert (batch.l4_offset <= batch.caplen.astype(int)).all()
    if capture.error is not None:
        assert "offset" in capture.error
    return capture.packets_read


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_random_mutations_never_crash(kind):
    original = sample_files()[kind]
    assert read_everything(original) > 0
    rng = random.Random(1234)
    for _ in range(300):
        content = bytearray(original)
        for _ in range(rng.randint(1, 12)):
            position = rng.randrange(len(content))
            choice = rng.random()
            if choice < 0.6:
                content[position] = rng.randrange(256)
            elif choice < 0.8:
                content[position : position + 4] = rng.choice(
                    [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x0c\x00\x00\x00"]
                )
            else:
                del content[position:]
                break
        read_everything(bytes(content))
        read_everything(gzip.compress(bytes(content))[: rng.randint(10, 400)])


def test_every_cut_of_a_small_capture_keeps_the_whole_packets_before_it():
    original = sample_files()["pcapng"]
    full = read_everything(original)
    previous = 0
    for cut in range(0, len(original), 7):
        packets = read_everything(original[:cut])
        assert packets <= full
        if packets >= 0:
            assert packets >= previous  # a longer prefix never loses packets
            previous = packets
