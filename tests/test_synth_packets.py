"""Tests of the packet builders: field positions, lengths and checksums."""

import struct

import dpkt
import pytest

from stfe_jax.synth import packets as p


def test_internet_checksum_known_value():
    # The RFC 1071 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2 -> 220d.
    assert p.internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_ipv4_header_fields_and_checksum():
    packet = p.ipv4(
        b"x" * 10,
        src="10.0.0.1",
        dst="192.168.1.2",
        protocol=p.IPPROTO_UDP,
        ttl=33,
        ident=0x1234,
        dont_fragment=True,
        tos=0x10,
    )
    assert len(packet) == 30
    version_ihl, tos, total_length, ident, flags, ttl, proto = struct.unpack(
        "!BBHHHBB", packet[:10]
    )
    assert version_ihl == 0x45
    assert (tos, total_length, ident, ttl, proto) == (0x10, 30, 0x1234, 33, 17)
    assert flags == 0x4000
    assert packet[12:16] == bytes([10, 0, 0, 1])
    assert packet[16:20] == bytes([192, 168, 1, 2])
    assert p.internet_checksum(packet[:20]) == 0
    assert struct.unpack("!H", packet[10:12])[0] != 0


def test_ipv4_options_fragment_fields():
    packet = p.ipv4(
        b"",
        src="1.2.3.4",
        dst="5.6.7.8",
        protocol=p.IPPROTO_TCP,
        options=b"\x94\x04\x00",  # router alert, 3 bytes -> padded to 4
        more_fragments=True,
        frag_offset_bytes=1480,
    )
    assert packet[0] == 0x46
    assert len(packet) == 24
    assert struct.unpack("!H", packet[6:8])[0] == 0x2000 | 185
    assert p.internet_checksum(packet[:24]) == 0
    with pytest.raises(ValueError):
        p.ipv4(b"", src="1.2.3.4", dst="5.6.7.8", protocol=6, frag_offset_bytes=7)


def test_tcp_over_ipv4_parses_and_checksums():
    segment = p.tcp(
        src_port=40000,
        dst_port=443,
        flags="SA",
        seq=1000,
        ack=2000,
        window=1024,
        options=b"\x02\x04\x05\xb4",
        payload=b"hello",
        src_ip="10.0.0.1",
        dst_ip="10.0.0.2",
    )
    frame = p.ethernet(
        p.ipv4(segment, src="10.0.0.1", dst="10.0.0.2", protocol=p.IPPROTO_TCP),
        ethertype=p.ETHERTYPE_IPV4,
    )
    eth = dpkt.ethernet.Ethernet(frame)
    tcp = eth.data.data
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.win) == (
        40000,
        443,
        1000,
        2000,
        1024,
    )
    assert tcp.flags == p.TCP_SYN | p.TCP_ACK
    assert tcp.off == 6
    assert tcp.data == b"hello"
    pseudo = bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 6]) + struct.pack("!H", len(segment))
    assert p.internet_checksum(pseudo + segment) == 0


def test_udp_and_icmp_checksums():
    datagram = p.udp(
        src_port=53, dst_port=5353, payload=b"abc", src_ip="1.1.1.1", dst_ip="2.2.2.2"
    )
    assert struct.unpack("!HHH", datagram[:6]) == (53, 5353, 11)
    pseudo = bytes([1, 1, 1, 1, 2, 2, 2, 2, 0, 17, 0, 11])
    assert p.internet_checksum(pseudo + datagram) == 0

    echo = p.icmp_echo(ident=7, seq=9, data=b"ping")
    assert echo[0] == 8 and echo[1] == 0
    assert struct.unpack("!HH", echo[4:8]) == (7, 9)
    assert p.internet_checksum(echo) == 0


def test_ipv6_extension_headers_and_icmpv6():
    message = p.icmpv6(
        128, 0, b"\x00\x01\x00\x02", src_ip="2001:db8::1", dst_ip="2001:db8::2"
    )
    packet = p.ipv6(
        message,
        src="2001:db8::1",
        dst="2001:db8::2",
        next_header=p.IPPROTO_ICMPV6,
        flow_label=0xABCDE,
        extension_headers=[
            (p.IPPROTO_HOPOPTS, b"\x01\x00"),  # PadN, 2 bytes -> header of 8
            p.ipv6_fragment_header(frag_offset_bytes=0, more_fragments=True, ident=5),
        ],
    )
    first_word, payload_length, next_header, hop_limit = struct.unpack(
        "!IHBB", packet[:8]
    )
    assert first_word >> 28 == 6
    assert first_word & 0xFFFFF == 0xABCDE
    assert payload_length == 8 + 8 + len(message)
    assert (next_header, hop_limit) == (p.IPPROTO_HOPOPTS, 64)
    hop = packet[40:48]
    assert hop[0] == p.IPPROTO_FRAGMENT and hop[1] == 0
    fragment = packet[48:56]
    assert fragment[0] == p.IPPROTO_ICMPV6
    assert struct.unpack("!HI", fragment[2:8]) == (1, 5)
    assert packet[56:] == message
    pseudo = (
        p.ip_bytes("2001:db8::1")
        + p.ip_bytes("2001:db8::2")
        + struct.pack("!I3xB", len(message), 58)
    )
    assert p.internet_checksum(pseudo + message) == 0


def test_ethernet_vlan_and_qinq_tags():
    single = p.ethernet(b"", ethertype=p.ETHERTYPE_IPV4, vlan_ids=[100])
    assert struct.unpack("!HHH", single[12:18]) == (0x8100, 100, 0x0800)
    double = p.ethernet(
        b"",
        ethertype=p.ETHERTYPE_IPV6,
        src_mac="aa:bb:cc:dd:ee:ff",
        vlan_ids=[10, 20],
    )
    assert double[6:12] == bytes.fromhex("aabbccddeeff")
    assert struct.unpack("!HHHHH", double[12:22]) == (0x88A8, 10, 0x8100, 20, 0x86DD)


def test_tcp_flag_letters():
    assert p.tcp_flags("FA") == 0x11
    assert p.tcp_flags("PA") == 0x18
    with pytest.raises(ValueError, match="unknown letter"):
        p.tcp_flags("SX")
