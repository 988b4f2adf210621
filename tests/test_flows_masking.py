"""Masking options: each zeroes exactly its header fields in the sample tensor, at
offsets found from the packet's own headers, and never touches the metadata."""

from __future__ import annotations

import numpy as np
import pytest
from test_flows_support import ip_frame, packet_batch, tcp_frame

from stfe_jax.flows import cut_flows
from stfe_jax.synth import packets as pk

T0 = 1_600_000_000 * 10**9
NO_MASKS = {
    "mask_addresses": False,
    "mask_ports": False,
    "mask_ip_checksum_id": False,
    "mask_ttl": False,
    "mask_tcp_seq_ack": False,
    "mask_tcp_timestamps": False,
    "mask_ipv6_flow_label": False,
}
# NOP, NOP, timestamps (kind 8, length 10) with TSval 0x01020304, TSecr 0x05060708.
TS_OPTION = bytes([1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8])


def first_row(frame: bytes, **masks) -> np.ndarray:
    """The sample bytes of the flow's first packet, with the given masks on."""
    config = {**NO_MASKS, **masks, "bytes_per_packet": 128}
    flows = next(iter(cut_flows([packet_batch([(T0, frame)])], config)))
    return flows.packets[0, 0], flows


def zeroed(frame: bytes, **masks) -> set[int]:
    """Byte positions (from the IP header) that the masks changed to zero."""
    plain, _ = first_row(frame)
    masked, _ = first_row(frame, **masks)
    changed = np.flatnonzero(plain != masked)
    assert (masked[changed] == 0).all()
    return set(changed.tolist())


# IPv4 with 4 bytes of IP options: the TCP header starts at 24, not 20.
IPV4_FRAME = pk.ethernet(
    pk.ipv4(
        pk.tcp(
            src_port=0x1234,
            dst_port=0x5678,
            flags="PA",
            seq=0x11223344,
            ack=0x55667788,
            options=TS_OPTION,
            payload=b"\xff" * 8,
            src_ip="10.1.2.3",
            dst_ip="10.4.5.6",
        ),
        src="10.1.2.3",
        dst="10.4.5.6",
        protocol=pk.IPPROTO_TCP,
        ttl=77,
        ident=0xABCD,
        options=bytes([0x94, 0x04, 0x00, 0x00]),  # router alert
    ),
    ethertype=pk.ETHERTYPE_IPV4,
)
L4_V4 = 24

# IPv6 with a hop-by-hop header (8 bytes): the TCP header starts at 48.
IPV6_FRAME = ip_frame(
    "2001:db8:1111:2222:3333:4444:5555:6666",
    "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
    pk.tcp(
        src_port=0x1234,
        dst_port=0x5678,
        flags="PA",
        seq=0x11223344,
        ack=0x55667788,
        options=TS_OPTION,
        src_ip="2001:db8:1111:2222:3333:4444:5555:6666",
        dst_ip="2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
    ),
    pk.IPPROTO_TCP,
    flow_label=0xABCDE,
    hop_limit=33,
    extension_headers=[(pk.IPPROTO_HOPOPTS, b"\x01\x04\x00\x00\x00\x00")],
)
L4_V6 = 48


@pytest.mark.parametrize(
    "mask, positions",
    [
        ("mask_addresses", set(range(12, 20))),
        ("mask_ports", set(range(L4_V4, L4_V4 + 4))),
        # IP checksum and ID, and the TCP checksum (it covers the addresses).
        ("mask_ip_checksum_id", {4, 5, 10, 11, L4_V4 + 16, L4_V4 + 17}),
        ("mask_ttl", {8}),
        ("mask_tcp_seq_ack", set(range(L4_V4 + 4, L4_V4 + 12))),
        # TSval and TSecr: after the header's 20 bytes, two NOPs, kind and length.
        ("mask_tcp_timestamps", set(range(L4_V4 + 24, L4_V4 + 32))),
    ],
)
def test_ipv4_mask_zeroes_exactly_its_field(mask, positions):
    assert zeroed(IPV4_FRAME, **{mask: True}) == positions


@pytest.mark.parametrize(
    "mask, positions",
    [
        ("mask_addresses", set(range(8, 40))),
        ("mask_ports", set(range(L4_V6, L4_V6 + 4))),
        ("mask_ttl", {7}),
        ("mask_tcp_seq_ack", set(range(L4_V6 + 4, L4_V6 + 12))),
        ("mask_tcp_timestamps", set(range(L4_V6 + 24, L4_V6 + 32))),
        # IPv6 has no header checksum or ID: only the TCP checksum.
        ("mask_ip_checksum_id", {L4_V6 + 16, L4_V6 + 17}),
    ],
)
def test_ipv6_mask_zeroes_exactly_its_field(mask, positions):
    assert zeroed(IPV6_FRAME, **{mask: True}) == positions


def test_ipv6_flow_label_mask_keeps_the_traffic_class_bits():
    plain, _ = first_row(IPV6_FRAME)
    masked, _ = first_row(IPV6_FRAME, mask_ipv6_flow_label=True)
    assert plain[1] & 0x0F == 0x0A and masked[1] == plain[1] & 0xF0
    assert masked[2:4].tolist() == [0, 0] and plain[2:4].tolist() == [0xBC, 0xDE]
    assert (masked[4:] == plain[4:]).all() and masked[0] == plain[0]


def test_default_masks_addresses_and_ports_but_keeps_metadata():
    _, flows = first_row(IPV4_FRAME, mask_addresses=True, mask_ports=True)
    default = next(iter(cut_flows([packet_batch([(T0, IPV4_FRAME)])], {})))
    np.testing.assert_array_equal(default.packets[0, 0, :64], flows.packets[0, 0, :64])
    assert not default.packets[0, 0, 12:20].any()
    assert bytes(default.src_addr[0, 12:]) == bytes([10, 1, 2, 3])
    assert (default.src_port[0], default.dst_port[0]) == (0x1234, 0x5678)


def test_masks_stay_inside_the_captured_bytes():
    # Cut the packet inside the TCP header: masking must not write past it.
    batch = packet_batch([(T0, IPV4_FRAME)])
    batch.caplen[0] = 14 + L4_V4 + 6  # ports and half the sequence number
    config = {**NO_MASKS, "mask_tcp_seq_ack": True, "mask_tcp_timestamps": True}
    flows = next(iter(cut_flows([batch], config)))
    row = flows.packets[0, 0]
    assert flows.packet_caplen[0, 0] == L4_V4 + 6
    assert row[L4_V4 : L4_V4 + 4].tolist() == [0x12, 0x34, 0x56, 0x78]
    assert row[L4_V4 + 4 :].sum() == 0


def test_masks_skip_the_transport_of_non_first_fragments():
    body = b"\x12\x34\x56\x78" + bytes(20)
    first = ip_frame(
        "10.0.0.1",
        "10.0.0.2",
        pk.udp(src_port=1, dst_port=2, payload=bytes(16)),
        17,
        ident=3,
        more_fragments=True,
    )
    later = ip_frame("10.0.0.1", "10.0.0.2", body, 17, ident=3, frag_offset_bytes=24)
    config = {**NO_MASKS, "mask_ports": True}
    flows = next(
        iter(cut_flows([packet_batch([(T0, first), (T0 + 1, later)])], config))
    )
    assert flows.packets[0, 0, 20:24].tolist() == [0, 0, 0, 0]  # first: ports
    assert flows.packets[0, 1, 20:24].tolist() == [0x12, 0x34, 0x56, 0x78]  # data


def test_header_quoted_by_an_icmp_error_is_masked_like_the_packets_own():
    query = tcp_frame(
        "10.1.2.3", "10.4.5.6", 0x1234, 0x5678, "S", seq=0x11223344, ident=0x0102
    )
    quoted = query[14 : 14 + 28]
    error = ip_frame(
        "10.4.5.6", "10.1.2.3", pk.icmp(3, 1, bytes(4) + quoted), pk.IPPROTO_ICMP
    )
    inner = 20 + 8  # the quoted IPv4 header, after the outer header and ICMP's 8
    assert zeroed(error, mask_addresses=True) == set(range(12, 20)) | set(
        range(inner + 12, inner + 20)
    )
    assert zeroed(error, mask_ports=True) == set(range(inner + 20, inner + 24))
    assert zeroed(error, mask_tcp_seq_ack=True) == set(range(inner + 24, inner + 28))
    # The ICMP checksum covers the quoted addresses: masked with the IP checksum.
    assert {22, 23, inner + 4, inner + 5, inner + 10, inner + 11} <= zeroed(
        error, mask_ip_checksum_id=True
    )
