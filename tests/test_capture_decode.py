"""Header decode: link types, VLAN/QinQ and other shims, IPv4 options, IPv6
extension headers, fragments, and packets cut short by the capture."""

import ipaddress
import struct

import numpy as np
import pytest

from stfe_jax.capture import open_capture
from stfe_jax.synth import packets as pk
from stfe_jax.synth import writers

T0_NS = 1_600_000_000_000_000_000


def tcp_v4(src="192.0.2.1", dst="198.51.100.7", sport=40000, dport=80, **ip_kwargs):
    segment = pk.tcp(src_port=sport, dst_port=dport, flags="SA", src_ip=src, dst_ip=dst)
    return pk.ipv4(segment, src=src, dst=dst, protocol=pk.IPPROTO_TCP, **ip_kwargs)


def udp_v6(src="2001:db8::1", dst="2001:db8::2", sport=5353, dport=53, **kwargs):
    segment = pk.udp(src_port=sport, dst_port=dport, payload=b"q" * 12)
    return pk.ipv6(segment, src=src, dst=dst, next_header=pk.IPPROTO_UDP, **kwargs)


def decode(tmp_path, packets, link_type=1, wirelens=None):
    """Writes ``packets`` (bytes) as a pcap of ``link_type``; returns one batch."""
    path = tmp_path / "decode.pcap"
    records = []
    for i, data in enumerate(packets):
        wirelen = len(data) if wirelens is None else wirelens[i]
        records.append((T0_NS + i, data, wirelen))
    writers.write_pcap(path, records, link_type=link_type)
    with open_capture(path) as capture:
        (batch,) = list(capture.batches())
    assert capture.error is None
    return batch


def address(batch, i, column="src_addr"):
    """The address of packet ``i`` as an ``ipaddress`` object (IPv4 unmapped)."""
    value = ipaddress.IPv6Address(getattr(batch, column)[i].tobytes())
    return value.ipv4_mapped or value


def test_ethernet_ipv4_tcp_fields(tmp_path):
    batch = decode(tmp_path, [pk.ethernet(tcp_v4(ident=777), ethertype=0x0800)])
    assert batch.ip_version[0] == 4
    assert batch.net_offset[0] == 14 and batch.l4_offset[0] == 34
    assert str(address(batch, 0)) == "192.0.2.1"
    assert str(address(batch, 0, "dst_addr")) == "198.51.100.7"
    assert bytes(batch.src_addr[0, :12]) == bytes(10) + b"\xff\xff"
    assert batch.protocol[0] == 6
    assert (batch.src_port[0], batch.dst_port[0]) == (40000, 80)
    assert batch.tcp_flags[0] == pk.TCP_SYN | pk.TCP_ACK
    assert batch.ip_id[0] == 777
    assert not batch.is_fragment[0] and batch.vlan_id[0] == 0


def test_vlan_and_qinq_tags(tmp_path):
    payload = tcp_v4()
    batch = decode(
        tmp_path,
        [
            pk.ethernet(payload, ethertype=0x0800, vlan_ids=[42]),
            pk.ethernet(payload, ethertype=0x0800, vlan_ids=[100, 200]),
            # 0x9100 outer tag (pre-standard QinQ).
            bytes(12)
            + struct.pack("!HHHH", 0x9100, 7, 0x8100, 8)
            + b"\x08\x00"
            + payload,
        ],
    )
    np.testing.assert_array_equal(batch.vlan_id, [42, 100, 7])
    np.testing.assert_array_equal(batch.net_offset, [18, 22, 22])
    np.testing.assert_array_equal(batch.dst_port, [80, 80, 80])


def test_ipv4_options_move_the_transport_header(tmp_path):
    options = bytes([7, 7, 4]) + bytes(4)  # record route, one slot
    batch = decode(tmp_path, [pk.ethernet(tcp_v4(options=options), ethertype=0x0800)])
    assert batch.l4_offset[0] == 14 + 28
    assert (batch.src_port[0], batch.dst_port[0]) == (40000, 80)


@pytest.mark.parametrize(
    "extensions",
    [
        [(pk.IPPROTO_HOPOPTS, bytes(4))],
        [(pk.IPPROTO_HOPOPTS, bytes(4)), (pk.IPPROTO_ROUTING, bytes(20))],
        [(pk.IPPROTO_DSTOPTS, bytes(12)), (pk.IPPROTO_AH, bytes(14))],
    ],
)
def test_ipv6_extension_headers_are_walked_to_the_transport(tmp_path, extensions):
    packet = udp_v6(extension_headers=extensions)
    batch = decode(tmp_path, [pk.ethernet(packet, ethertype=0x86DD)])
    chain = len(packet) - 40 - 8 - 12
    assert batch.ip_version[0] == 6
    assert batch.protocol[0] == 17
    assert batch.l4_offset[0] == 14 + 40 + chain
    assert (batch.src_port[0], batch.dst_port[0]) == (5353, 53)
    assert str(address(batch, 0)) == "2001:db8::1"
    assert not batch.is_fragment[0]


def test_ipv6_stops_at_esp(tmp_path):
    packet = pk.ipv6(bytes(40), src="2001:db8::1", dst="2001:db8::2", next_header=50)
    batch = decode(tmp_path, [packet], link_type=229)
    assert batch.protocol[0] == 50 and batch.l4_offset[0] == 40
    assert batch.src_port[0] == 0


def test_ipv4_fragments(tmp_path):
    segment = pk.udp(src_port=1111, dst_port=2222, payload=bytes(40))
    first = pk.ipv4(
        segment[:24],
        src="10.0.0.1",
        dst="10.0.0.2",
        protocol=17,
        ident=9,
        more_fragments=True,
    )
    rest = pk.ipv4(
        segment[24:],
        src="10.0.0.1",
        dst="10.0.0.2",
        protocol=17,
        ident=9,
        frag_offset_bytes=24,
    )
    whole = pk.ipv4(segment, src="10.0.0.1", dst="10.0.0.2", protocol=17)
    batch = decode(tmp_path, [first, rest, whole], link_type=228)
    np.testing.assert_array_equal(batch.is_fragment, [True, True, False])
    np.testing.assert_array_equal(batch.more_fragments, [True, False, False])
    np.testing.assert_array_equal(batch.frag_offset, [0, 24, 0])
    np.testing.assert_array_equal(batch.ip_id, [9, 9, 0])
    np.testing.assert_array_equal(batch.src_port, [1111, 0, 1111])
    np.testing.assert_array_equal(batch.l4_offset, [20, -1, 20])


def test_ipv6_fragments(tmp_path):
    segment = pk.udp(src_port=1111, dst_port=2222, payload=bytes(40))
    frag = pk.ipv6_fragment_header
    first = pk.ipv6(
        segment[:24],
        src="2001:db8::1",
        dst="2001:db8::2",
        next_header=17,
        extension_headers=[frag(frag_offset_bytes=0, more_fragments=True, ident=5)],
    )
    rest = pk.ipv6(
        segment[24:],
        src="2001:db8::1",
        dst="2001:db8::2",
        next_header=17,
        extension_headers=[frag(frag_offset_bytes=24, more_fragments=False, ident=5)],
    )
    atomic = pk.ipv6(
        segment,
        src="2001:db8::1",
        dst="2001:db8::2",
        next_header=17,
        extension_headers=[frag(frag_offset_bytes=0, more_fragments=False, ident=6)],
    )
    batch = decode(tmp_path, [first, rest, atomic], link_type=101)
    np.testing.assert_array_equal(batch.is_fragment, [True, True, True])
    np.testing.assert_array_equal(batch.frag_offset, [0, 24, 0])
    np.testing.assert_array_equal(batch.more_fragments, [True, False, False])
    np.testing.assert_array_equal(batch.ip_id, [5, 5, 6])
    np.testing.assert_array_equal(batch.protocol, [17, 17, 17])
    np.testing.assert_array_equal(batch.src_port, [1111, 0, 1111])
    np.testing.assert_array_equal(batch.l4_offset, [48, -1, 48])


def test_packets_cut_short_decode_as_far_as_the_bytes_go(tmp_path):
    frame = pk.ethernet(tcp_v4(), ethertype=0x0800)
    ipv6_frame = pk.ethernet(
        udp_v6(extension_headers=[(pk.IPPROTO_HOPOPTS, bytes(4))]), ethertype=0x86DD
    )
    cuts = [
        frame[:54],  # whole TCP header
        frame[:38],  # ports only
        frame[:34],  # cut right after the IP header (header-only trace)
        frame[:30],  # inside the IP header
        frame[:10],  # inside the Ethernet header
        ipv6_frame[:58],  # inside the hop-by-hop header
    ]
    batch = decode(tmp_path, cuts, wirelens=[len(frame)] * 5 + [len(ipv6_frame)])
    np.testing.assert_array_equal(batch.caplen, [len(c) for c in cuts])
    np.testing.assert_array_equal(batch.wirelen[:5], [len(frame)] * 5)
    np.testing.assert_array_equal(batch.ip_version, [4, 4, 4, 4, 0, 6])
    np.testing.assert_array_equal(batch.net_offset, [14, 14, 14, -1, -1, 14])
    np.testing.assert_array_equal(batch.l4_offset, [34, 34, 34, -1, -1, -1])
    np.testing.assert_array_equal(batch.dst_port, [80, 80, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.tcp_flags, [0x12, 0, 0, 0, 0, 0])
    assert str(address(batch, 2)) == "192.0.2.1"
    assert not batch.src_addr[3].any()  # addresses not captured


def test_raw_ip_link_types(tmp_path):
    v4, v6 = tcp_v4(), udp_v6()
    for link_type, packet, version in [
        (101, v4, 4),
        (101, v6, 6),
        (12, v4, 4),
        (14, v6, 6),
        (228, v4, 4),
        (229, v6, 6),
    ]:
        batch = decode(tmp_path, [packet], link_type=link_type)
        assert batch.ip_version[0] == version, link_type
        assert batch.net_offset[0] == 0
        assert batch.dst_port[0] in (80, 53)


def test_linux_cooked_captures(tmp_path):
    packet = tcp_v4()
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + packet
    batch = decode(tmp_path, [sll], link_type=113)
    assert batch.net_offset[0] == 16 and batch.dst_port[0] == 80
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 0, 6, bytes(8)) + udp_v6()
    batch = decode(tmp_path, [sll2], link_type=276)
    assert batch.net_offset[0] == 20 and batch.ip_version[0] == 6
    assert batch.dst_port[0] == 53


@pytest.mark.parametrize(
    "link_type, header, version",
    [
        (0, struct.pack("<I", 2), 4),  # NULL, little-endian host
        (0, struct.pack(">I", 2), 4),  # NULL, big-endian host
        (0, struct.pack("<I", 30), 6),  # NULL, macOS AF_INET6
        (0, struct.pack("<I", 24), 6),  # NULL, NetBSD/OpenBSD AF_INET6
        (108, struct.pack(">I", 2), 4),  # LOOP: network byte order
        (108, struct.pack(">I", 28), 6),  # LOOP, FreeBSD AF_INET6
    ],
)
def test_bsd_loopback(tmp_path, link_type, header, version):
    packet = tcp_v4() if version == 4 else udp_v6()
    batch = decode(tmp_path, [header + packet], link_type=link_type)
    assert batch.ip_version[0] == version and batch.net_offset[0] == 4
    assert batch.dst_port[0] in (80, 53)


def test_ppp_pppoe_and_mpls(tmp_path):
    packet = tcp_v4()
    ppp = b"\xff\x03\x00\x21" + packet
    ppp_compressed = b"\x21" + packet  # address/control and protocol compressed
    batch = decode(tmp_path, [ppp, ppp_compressed], link_type=9)
    np.testing.assert_array_equal(batch.net_offset, [4, 1])
    np.testing.assert_array_equal(batch.dst_port, [80, 80])

    pppoe = struct.pack("!BBHH", 0x11, 0, 1, len(packet) + 2) + b"\x00\x21" + packet
    mpls = struct.pack("!I", (16 << 12) | 0x40) + struct.pack(
        "!I", (17 << 12) | 0x100 | 0x40
    )
    frames = [
        pk.ethernet(pppoe, ethertype=0x8864),
        pk.ethernet(mpls + packet, ethertype=0x8847),
        pk.ethernet(mpls + udp_v6(), ethertype=0x8847),
    ]
    batch = decode(tmp_path, frames)
    np.testing.assert_array_equal(batch.net_offset, [22, 22, 22])
    np.testing.assert_array_equal(batch.ip_version, [4, 4, 6])
    np.testing.assert_array_equal(batch.dst_port, [80, 80, 53])


def test_llc_snap_and_non_ip_ethertypes(tmp_path):
    packet = tcp_v4()
    snap = b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + packet
    frames = [
        bytes(12) + struct.pack("!H", len(snap)) + snap,
        pk.ethernet(bytes(28), ethertype=pk.ETHERTYPE_ARP),
        bytes(12) + struct.pack("!H", 3) + b"\x42\x42\x03",  # STP over LLC
    ]
    batch = decode(tmp_path, frames)
    np.testing.assert_array_equal(batch.net_offset, [22, -1, -1])
    np.testing.assert_array_equal(batch.ip_version, [4, 0, 0])
    np.testing.assert_array_equal(batch.protocol, [6, 0, 0])


def test_bogus_version_counts_as_the_link_layer_says(tmp_path):
    """Like Wireshark: a damaged header announced as IPv4 still counts as IPv4
    (no fields), one announced as IPv6 is not IP."""
    bad = b"\x55" + tcp_v4()[1:]
    frames = [pk.ethernet(bad, ethertype=0x0800), pk.ethernet(bad, ethertype=0x86DD)]
    batch = decode(tmp_path, frames)
    np.testing.assert_array_equal(batch.ip_version, [4, 0])
    np.testing.assert_array_equal(batch.net_offset, [-1, -1])
    np.testing.assert_array_equal(batch.protocol, [0, 0])
    np.testing.assert_array_equal(batch.l4_offset, [-1, -1])


def test_ieee80211_data_frames(tmp_path):
    snap = b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + tcp_v4()
    data = b"\x08\x01" + bytes(22)  # data frame to the distribution system
    qos = b"\x88\x02" + bytes(24)  # QoS data: 2 more bytes of QoS control
    protected = b"\x08\x41" + bytes(22)  # encrypted body: not decoded
    radiotap = struct.pack("<BBHI", 0, 0, 8, 0)
    batch = decode(tmp_path, [data + snap, qos + snap, protected + snap], 105)
    np.testing.assert_array_equal(batch.net_offset, [32, 34, -1])
    np.testing.assert_array_equal(batch.dst_port, [80, 80, 0])
    batch = decode(tmp_path, [radiotap + qos + snap], link_type=127)
    assert batch.net_offset[0] == 42 and batch.ip_version[0] == 4


def test_ppi_with_ethernet_inside(tmp_path):
    frame = pk.ethernet(tcp_v4(), ethertype=0x0800)
    ppi = struct.pack("<BBHI", 0, 0, 8, 1) + frame
    batch = decode(tmp_path, [ppi], link_type=192)
    assert batch.net_offset[0] == 22 and batch.dst_port[0] == 80
