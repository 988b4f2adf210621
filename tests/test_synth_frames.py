"""Tests of the vectorised frame builder against the one-packet builders."""

import io
import struct

import numpy as np

from stfe_jax.synth import frames as fr
from stfe_jax.synth import packets as p
from stfe_jax.synth import traffic, writers
from stfe_jax.synth.mawi_day import count_flows

V4_SRC, V4_DST = "198.51.100.7", "203.0.113.9"
V6_SRC, V6_DST = "2001:db8::7", "2001:db8:1::9"


def _addresses(*texts: str) -> np.ndarray:
    return np.stack([traffic.address_bytes(text) for text in texts])


def _build(table: fr.PacketTable):
    return fr.build_frames(table, np.random.default_rng(0))


def test_ipv4_syn_with_options_matches_reference_bytes():
    table = traffic.tcp_packets(
        ts_ns=[0],
        src=_addresses(V4_SRC),
        dst=_addresses(V4_DST),
        src_port=40000,
        dst_port=443,
        flags=p.TCP_SYN,
        outbound=True,
        seq=123456789,
        window=64240,
        options=fr.TCP_OPTIONS_SYN,
        tsval=1000,
        tsecr=0,
        ttl=57,
        ip_id=0x4242,
    )
    frames, caplen, wirelen = _build(table)
    options = bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10])
    options += struct.pack("!II", 1000, 0) + bytes([1, 3, 3, 7])
    segment = p.tcp(
        src_port=40000,
        dst_port=443,
        flags="S",
        seq=123456789,
        window=64240,
        options=options,
        src_ip=V4_SRC,
        dst_ip=V4_DST,
    )
    reference = p.ethernet(
        p.ipv4(
            segment,
            src=V4_SRC,
            dst=V4_DST,
            protocol=p.IPPROTO_TCP,
            ttl=57,
            ident=0x4242,
            dont_fragment=True,
        ),
        ethertype=p.ETHERTYPE_IPV4,
        src_mac="00:1b:54:c2:7e:01",
        dst_mac="00:0e:39:a4:11:c0",
    )
    assert caplen[0] == len(reference) == 14 + 20 + 40
    assert wirelen[0] == 74
    assert frames[0, : caplen[0]].tobytes() == reference
    assert not frames[0, caplen[0] :].any()


def test_ipv6_ack_with_timestamps_matches_reference_bytes():
    table = traffic.tcp_packets(
        ts_ns=[0],
        src=_addresses(V6_SRC),
        dst=_addresses(V6_DST),
        src_port=443,
        dst_port=50000,
        flags=p.TCP_ACK,
        outbound=False,
        seq=7,
        ack=9,
        window=501,
        options=fr.TCP_OPTIONS_TIMESTAMPS,
        tsval=5,
        tsecr=6,
        ttl=60,
        flow_label=0xABCDE,
    )
    frames, caplen, wirelen = _build(table)
    options = bytes([1, 1, 8, 10]) + struct.pack("!II", 5, 6)
    segment = p.tcp(
        src_port=443,
        dst_port=50000,
        flags="A",
        seq=7,
        ack=9,
        window=501,
        options=options,
        src_ip=V6_SRC,
        dst_ip=V6_DST,
    )
    reference = p.ethernet(
        p.ipv6(
            segment,
            src=V6_SRC,
            dst=V6_DST,
            next_header=p.IPPROTO_TCP,
            hop_limit=60,
            flow_label=0xABCDE,
        ),
        ethertype=p.ETHERTYPE_IPV6,
        src_mac="00:0e:39:a4:11:c0",
        dst_mac="00:1b:54:c2:7e:01",
    )
    assert caplen[0] == len(reference) == 14 + 40 + 32
    assert wirelen[0] == len(reference)
    assert frames[0, : caplen[0]].tobytes() == reference


def test_udp_and_icmp_are_cut_after_their_headers():
    udp = traffic.udp_packets(
        ts_ns=[0],
        src=_addresses(V4_SRC),
        dst=_addresses(V4_DST),
        src_port=5353,
        dst_port=53,
        payload=300,
        outbound=True,
    )
    echo = traffic.icmp_echo_packets(
        ts_ns=[0, 1],
        src=_addresses(V4_SRC, V6_SRC),
        dst=_addresses(V4_DST, V6_DST),
        reply=[False, True],
        icmp_id=77,
        icmp_seq=3,
        payload=56,
        outbound=True,
    )
    frames, caplen, wirelen = _build(fr.PacketTable.concatenate([udp, echo]))
    assert caplen.tolist() == [42, 42, 62]
    assert wirelen.tolist() == [14 + 20 + 8 + 300, 14 + 20 + 8 + 56, 14 + 40 + 8 + 56]
    # UDP: ports and length field; the checksum covers bytes that are not kept.
    assert struct.unpack("!HHH", frames[0, 34:40].tobytes()) == (5353, 53, 308)
    assert struct.unpack("!H", frames[0, 16:18].tobytes())[0] == 328
    assert p.internet_checksum(frames[0, 14:34].tobytes()) == 0
    # ICMP echo request over IPv4, echo reply over IPv6 (type 129, next header 58).
    assert frames[1, 34] == 8 and frames[1, 23] == p.IPPROTO_ICMP
    assert struct.unpack("!HH", frames[1, 38:42].tobytes()) == (77, 3)
    assert frames[2, 54] == 129 and frames[2, 20] == p.IPPROTO_ICMPV6
    assert struct.unpack("!H", frames[2, 18:20].tobytes())[0] == 64


def test_short_frames_are_padded_on_the_wire():
    table = traffic.tcp_packets(
        ts_ns=[0],
        src=_addresses(V4_SRC),
        dst=_addresses(V4_DST),
        src_port=1,
        dst_port=2,
        flags=p.TCP_RST,
        outbound=True,
    )
    _, caplen, wirelen = _build(table)
    assert caplen[0] == 54
    assert wirelen[0] == 60


def test_vectorised_pcap_writer_matches_record_writer():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 30, 20)
    frames = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    ts_ns = np.sort(rng.integers(0, 10**18, 20))
    wirelen = lengths + 100
    fast, slow = io.BytesIO(), io.BytesIO()
    writers.write_pcap_frames(fast, ts_ns, frames, lengths, wirelen, snaplen=96)
    records = [
        (int(t), frames[i, : lengths[i]].tobytes(), int(wirelen[i]))
        for i, t in enumerate(ts_ns)
    ]
    writers.write_pcap(slow, records, snaplen=96)
    assert fast.getvalue() == slow.getvalue()


def test_count_flows_joins_both_directions():
    table = traffic.tcp_packets(
        ts_ns=np.arange(5),
        src=_addresses(V4_SRC, V4_DST, V4_SRC, V4_SRC, V6_SRC),
        dst=_addresses(V4_DST, V4_SRC, V4_DST, V4_DST, V6_DST),
        src_port=[1000, 80, 1000, 1001, 1000],
        dst_port=[80, 1000, 80, 80, 80],
        flags=p.TCP_ACK,
        outbound=True,
    )
    # Packets 0-2 are one connection seen both ways; 3 differs by port, 4 by family.
    assert count_flows(table) == 3
