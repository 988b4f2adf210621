"""Flow cutting rules on small captures built in code: keys, timeouts, TCP ends,
fragments, VLANs, IPv6, the sample tensor, and streaming across batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_flows_support import ip_frame, packet_batch, tcp_frame, tcp_session, udp_frame

from stfe_jax.flows import FlowBatch, cut_flows
from stfe_jax.synth import packets as pk

T0 = 1_600_000_000 * 10**9
S = 10**9
UNMASKED = {"mask_addresses": False, "mask_ports": False}


def cut(records, batch_size=None, **config):
    """All flows of ``records`` (cut in batches of ``batch_size``) and the stats."""
    if batch_size is None:
        batches = [packet_batch(records)]
    else:
        batches = [
            packet_batch(records[i : i + batch_size])
            for i in range(0, len(records), batch_size)
        ]
    stream = cut_flows(batches, config)
    parts = list(stream)
    names = [f.name for f in dataclasses.fields(FlowBatch)]
    if not parts:
        return None, stream.stats
    flows = FlowBatch(
        **{n: np.concatenate([getattr(p, n) for p in parts]) for n in names}
    )
    return flows, stream.stats


def by_start(flows):
    """Flow indices ordered by start time (then source port)."""
    return np.lexsort((flows.src_port, flows.start_ns))


def v4(address: str) -> list[int]:
    return [0] * 10 + [255, 255] + [int(x) for x in address.split(".")]


def test_handshake_and_fin_make_one_bidirectional_flow():
    flows, stats = cut(tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0))
    assert len(flows) == 1
    assert flows.packet_count[0] == 8 and flows.n_packets[0] == 8
    assert flows.direction[0].tolist() == [0, 1, 0, 0, 1, 0, 1, 0]
    assert flows.fwd_packet_count[0] == 5
    assert flows.src_addr[0].tolist() == v4("10.0.0.1")
    assert flows.dst_addr[0].tolist() == v4("10.0.0.2")
    assert (flows.src_port[0], flows.dst_port[0]) == (40000, 80)
    assert flows.protocol[0] == 6 and flows.ip_version[0] == 4
    assert flows.tcp_flags_seen[0] == pk.TCP_SYN | pk.TCP_ACK | pk.TCP_PSH | pk.TCP_FIN
    assert flows.start_ns[0] == T0 and flows.end_ns[0] == T0 + 7 * 10**6
    assert stats.flows_by_end_reason["fin"] == 1
    assert stats.packets_seen == 8


def test_server_first_packet_makes_server_the_initiator():
    records = tcp_session("10.0.0.9", "10.0.0.2", 40000, 80, T0)[1:]  # no SYN
    flows, _ = cut(records)
    assert flows.src_addr[0].tolist() == v4("10.0.0.2")
    assert (flows.src_port[0], flows.dst_port[0]) == (80, 40000)
    assert flows.direction[0, :3].tolist() == [0, 1, 1]


def test_fin_from_both_sides_ends_flow_and_port_reuse_starts_another():
    first = tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0)
    second = tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0 + S)
    flows, stats = cut(first + second)
    assert len(flows) == 2
    assert flows.packet_count.tolist() == [8, 8]
    assert stats.flows_by_end_reason["fin"] == 2


def test_fin_from_one_side_only_does_not_end_the_flow():
    records = tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0)[:6]  # client FIN
    records.append((T0 + 10 * S, tcp_frame("10.0.0.2", "10.0.0.1", 80, 40000, "PA")))
    flows, stats = cut(records)
    assert len(flows) == 1 and flows.packet_count[0] == 7
    assert stats.flows_by_end_reason["end_of_capture"] == 1


def test_rst_ends_flow_at_once():
    records = tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0, close="rst")
    records.append((T0 + S, tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, "PA")))
    flows, stats = cut(records)
    assert len(flows) == 2
    order = by_start(flows)
    assert flows.packet_count[order].tolist() == [6, 1]
    assert flows.tcp_flags_seen[order[0]] & pk.TCP_RST
    assert stats.flows_by_end_reason["rst"] == 1


@pytest.mark.parametrize("batch_size", [None, 1])
def test_idle_timeout_splits_flows_at_gaps_over_the_timeout(batch_size):
    gaps_s = [0, 119, 121 + 119, 121 + 119 + 121]
    records = [
        (T0 + g * S, udp_frame("10.0.0.1", "10.0.0.2", 5000, 53, b"q")) for g in gaps_s
    ]
    flows, stats = cut(records, batch_size=batch_size)
    assert sorted(flows.packet_count.tolist()) == [1, 1, 2]
    assert stats.flows_by_end_reason["idle_timeout"] == 2


def test_idle_timeout_follows_the_config():
    records = [
        (T0 + g * S, udp_frame("10.0.0.1", "10.0.0.2", 5000, 53)) for g in (0, 5, 20)
    ]
    flows, _ = cut(records, idle_timeout_s=10.0)
    assert sorted(flows.packet_count.tolist()) == [1, 2]


def test_active_timeout_cuts_long_flows():
    records = [
        (T0 + k * 60 * S, udp_frame("10.0.0.1", "10.0.0.2", 5000, 53))
        for k in range(40)  # one packet a minute for 39 minutes
    ]
    flows, stats = cut(records, batch_size=7)
    order = by_start(flows)
    # 0..1800 s is within 1800 s of the start: 31 packets; then 1860..2340 s.
    assert flows.packet_count[order].tolist() == [31, 9]
    assert flows.start_ns[order[1]] == T0 + 1860 * S
    assert stats.flows_by_end_reason["active_timeout"] == 1


def test_flow_state_carries_across_batches():
    records = tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0)
    whole, _ = cut(records)
    for size in (1, 3):
        split, _ = cut(records, batch_size=size)
        for field in dataclasses.fields(FlowBatch):
            np.testing.assert_array_equal(
                getattr(split, field.name), getattr(whole, field.name), field.name
            )


def test_many_concurrent_flows_grow_the_table_and_stay_separate():
    rng = np.random.default_rng(0)
    n_flows = 3000
    records = []
    for k in range(3):
        for f in rng.permutation(n_flows):
            src = f"10.{f // 250}.{f % 250}.1"
            sport = 1024 + int(f)
            if k == 1:
                frame = udp_frame("192.168.0.1", src, 53, sport, b"r")
            else:
                frame = udp_frame(src, "192.168.0.1", sport, 53, b"q")
            records.append((T0 + len(records) * 1000, frame))
    flows, stats = cut(records, batch_size=1000)
    assert len(flows) == n_flows
    assert (flows.packet_count == 3).all()
    assert (flows.direction[:, :3] == [0, 1, 0]).all()
    assert np.unique(flows.src_port).size == n_flows
    assert stats.max_open_flows == n_flows


def test_ipv4_fragments_join_their_datagram_flow_or_are_dropped():
    body = pk.udp(src_port=5353, dst_port=53, payload=bytes(range(64)))
    first = ip_frame(
        "10.0.0.1", "10.0.0.2", body[:40], 17, ident=77, more_fragments=True
    )
    second = ip_frame(
        "10.0.0.1", "10.0.0.2", body[40:], 17, ident=77, frag_offset_bytes=40
    )
    orphan = ip_frame(
        "10.0.0.1", "10.0.0.2", body[40:], 17, ident=78, frag_offset_bytes=40
    )
    reply = udp_frame("10.0.0.2", "10.0.0.1", 53, 5353, b"a")
    flows, stats = cut(
        [(T0, first), (T0 + 1, second), (T0 + 2, orphan), (T0 + 3, reply)]
    )
    assert len(flows) == 1
    assert flows.packet_count[0] == 3
    assert (flows.src_port[0], flows.dst_port[0]) == (5353, 53)
    assert flows.direction[0, :3].tolist() == [0, 0, 1]
    assert flows.packet_caplen[0, 1] == 20 + 32  # the second fragment alone
    assert stats.fragments_joined == 1 and stats.fragments_dropped == 1


def test_ipv6_fragments_join_their_datagram_flow():
    body = pk.udp(src_port=5353, dst_port=53, payload=bytes(100))
    frag = pk.ipv6_fragment_header
    first = ip_frame(
        "2001:db8::1",
        "2001:db8::2",
        body[:56],
        17,
        extension_headers=[frag(frag_offset_bytes=0, more_fragments=True, ident=5)],
    )
    second = ip_frame(
        "2001:db8::1",
        "2001:db8::2",
        body[56:],
        17,
        extension_headers=[frag(frag_offset_bytes=56, more_fragments=False, ident=5)],
    )
    orphan = ip_frame(
        "2001:db8::1",
        "2001:db8::2",
        body[56:],
        17,
        extension_headers=[frag(frag_offset_bytes=56, more_fragments=False, ident=6)],
    )
    flows, stats = cut([(T0, first), (T0 + 1, second), (T0 + 2, orphan)])
    assert len(flows) == 1 and flows.packet_count[0] == 2
    assert flows.ip_version[0] == 6
    assert (flows.src_port[0], flows.dst_port[0]) == (5353, 53)
    assert stats.fragments_joined == 1 and stats.fragments_dropped == 1


def test_fragment_after_its_first_fragment_expired_is_dropped():
    body = pk.udp(src_port=5353, dst_port=53, payload=bytes(64))
    first = ip_frame(
        "10.0.0.1", "10.0.0.2", body[:40], 17, ident=1, more_fragments=True
    )
    late = ip_frame(
        "10.0.0.1", "10.0.0.2", body[40:], 17, ident=1, frag_offset_bytes=40
    )
    _, stats = cut([(T0, first), (T0 + 31 * S, late)])
    assert stats.fragments_joined == 0 and stats.fragments_dropped == 1


def test_vlan_on_one_side_only_keeps_one_flow_unless_vlan_in_key():
    records = [
        (T0, tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, "S", vlan_ids=(10,))),
        (T0 + 1, tcp_frame("10.0.0.2", "10.0.0.1", 80, 40000, "SA")),
        (T0 + 2, tcp_frame("10.0.0.1", "10.0.0.2", 40000, 80, "A", vlan_ids=(10,))),
    ]
    flows, _ = cut(records)
    assert len(flows) == 1 and flows.packet_count[0] == 3
    # The bytes from the IP header on do not depend on the tag.
    assert flows.packet_caplen[0].tolist()[:3] == [40, 40, 40]
    split, _ = cut(records, vlan_in_key=True)
    assert sorted(split.packet_count.tolist()) == [1, 2]


def test_ipv6_tcp_session_is_one_flow_with_ipv6_metadata():
    records = [
        (T0 + k, tcp_frame(a, b, sp, dp, flags))
        for k, (a, b, sp, dp, flags) in enumerate(
            [
                ("2001:db8::1", "2001:db8::2", 40000, 443, "S"),
                ("2001:db8::2", "2001:db8::1", 443, 40000, "SA"),
                ("2001:db8::1", "2001:db8::2", 40000, 443, "A"),
            ]
        )
    ]
    flows, _ = cut(records, **UNMASKED)
    assert len(flows) == 1 and flows.ip_version[0] == 6
    assert bytes(flows.src_addr[0]) == pk.ip_bytes("2001:db8::1")
    assert flows.packet_caplen[0, :3].tolist() == [60, 60, 60]
    assert flows.packets[0, 0, 0] >> 4 == 6
    assert bytes(flows.packets[0, 0, 8:24]) == pk.ip_bytes("2001:db8::1")


def test_icmp_is_keyed_by_addresses_and_protocol():
    request = pk.icmp_echo(ident=1, seq=1)
    reply = pk.icmp_echo(ident=1, seq=1, reply=True)
    other = pk.icmp_echo(ident=2, seq=7)
    records = [
        (T0, ip_frame("10.0.0.1", "10.0.0.2", request, pk.IPPROTO_ICMP)),
        (T0 + 1, ip_frame("10.0.0.2", "10.0.0.1", reply, pk.IPPROTO_ICMP)),
        (T0 + 2, ip_frame("10.0.0.1", "10.0.0.2", other, pk.IPPROTO_ICMP)),
        (T0 + 3, ip_frame("10.0.0.1", "10.0.0.3", other, pk.IPPROTO_ICMP)),
    ]
    flows, _ = cut(records)
    order = by_start(flows)
    assert flows.packet_count[order].tolist() == [3, 1]
    assert flows.protocol[order].tolist() == [1, 1]
    assert flows.src_port.tolist() == [0, 0]


def icmp_unreachable(quoted_frame: bytes, src: str, dst: str) -> bytes:
    """An ICMP port unreachable from ``src`` to ``dst`` quoting a frame's packet."""
    quoted = quoted_frame[14 : 14 + 28]  # IPv4 header and 8 bytes of transport
    return ip_frame(src, dst, pk.icmp(3, 3, bytes(4) + quoted), pk.IPPROTO_ICMP)


def test_icmp_error_joins_the_flow_of_the_packet_it_quotes():
    query = udp_frame("10.0.0.1", "10.0.0.2", 5353, 53, b"q")
    error = icmp_unreachable(query, "10.0.0.2", "10.0.0.1")
    unrelated = icmp_unreachable(
        udp_frame("10.0.0.1", "10.0.0.9", 1, 2), "10.0.0.9", "10.0.0.1"
    )
    records = [(T0, query), (T0 + 1, error), (T0 + 2, unrelated)]
    flows, stats = cut(records)
    order = by_start(flows)
    assert flows.protocol[order].tolist() == [17, 1]
    assert flows.packet_count[order].tolist() == [2, 1]
    joined = order[0]
    assert flows.direction[joined, :2].tolist() == [0, 1]
    assert (flows.src_port[joined], flows.dst_port[joined]) == (5353, 53)
    assert flows.packet_caplen[joined, 1] == 20 + 8 + 28
    assert stats.icmp_errors_attached == 1


def test_icmp_error_after_its_flow_ended_forms_an_icmp_flow():
    query = udp_frame("10.0.0.1", "10.0.0.2", 5353, 53, b"q")
    error = icmp_unreachable(query, "10.0.0.2", "10.0.0.1")
    flows, stats = cut([(T0, query), (T0 + 200 * S, error)])
    assert sorted(flows.protocol.tolist()) == [1, 17]
    assert stats.icmp_errors_attached == 0


def test_icmpv6_error_joins_the_flow_of_the_packet_it_quotes():
    query = udp_frame("2001:db8::1", "2001:db8::2", 5353, 53, b"q")
    quoted = query[14 : 14 + 48]
    message = pk.icmpv6(
        1, 4, bytes(4) + quoted, src_ip="2001:db8::2", dst_ip="2001:db8::1"
    )
    error = ip_frame("2001:db8::2", "2001:db8::1", message, pk.IPPROTO_ICMPV6)
    flows, stats = cut([(T0, query), (T0 + 1, error)])
    assert len(flows) == 1 and flows.packet_count[0] == 2
    assert flows.direction[0, :2].tolist() == [0, 1]
    assert stats.icmp_errors_attached == 1


def test_non_ip_packets_are_counted_and_skipped():
    arp = pk.ethernet(bytes(28), ethertype=pk.ETHERTYPE_ARP)
    records = [(T0, arp), (T0 + 1, udp_frame("10.0.0.1", "10.0.0.2", 1, 2))]
    flows, stats = cut(records)
    assert len(flows) == 1
    assert stats.packets_seen == 2 and stats.non_ip_skipped == 1


def test_sample_tensor_cuts_pads_and_records_caplen_and_iat():
    payload = bytes(range(200))
    records = [
        (
            T0 + k * 250_000_000,
            udp_frame("10.0.0.1", "10.0.0.2", 7, 9, payload[: 10 * k]),
        )
        for k in range(12)
    ]
    flows, _ = cut(records, packets_per_flow=8, bytes_per_packet=64, **UNMASKED)
    assert flows.packets.shape == (1, 8, 64)
    assert flows.n_packets[0] == 8 and flows.packet_count[0] == 12
    caplen = [28 + 10 * k for k in range(8)]
    assert flows.packet_caplen[0].tolist() == caplen
    np.testing.assert_allclose(flows.iat_s[0], [0] + [0.25] * 7)
    # Packet 0: 28 bytes then zero padding; packet 5: cut at 64 bytes.
    assert not flows.packets[0, 0, 28:].any()
    assert bytes(flows.packets[0, 5, 28:64]) == payload[:36]
    assert flows.byte_count[0] == sum(14 + 28 + 10 * k for k in range(12))


def test_short_flow_pads_absent_packets_with_zero_caplen():
    flows, _ = cut([(T0, udp_frame("10.0.0.1", "10.0.0.2", 7, 9, b"x"))])
    assert flows.n_packets[0] == 1
    assert flows.packet_caplen[0].tolist() == [29] + [0] * 7
    assert not flows.packets[0, 1:].any()


def test_reused_flow_slot_leaves_nothing_of_its_earlier_flow():
    long_flow = tcp_session("10.0.0.1", "10.0.0.2", 40000, 80, T0)  # 8 packets
    later = (T0 + S, udp_frame("10.0.0.3", "10.0.0.4", 7, 9, b"x"))
    flows, _ = cut([*long_flow, later], batch_size=8)
    short = int(np.flatnonzero(flows.packet_count == 1)[0])
    assert flows.packet_caplen[short].tolist() == [29] + [0] * 7
    assert not flows.packets[short, 1:].any()
    assert not flows.direction[short].any() and not flows.iat_s[short].any()


def test_flows_of_one_capture_carry_its_index():
    stream = cut_flows(
        [packet_batch([(T0, udp_frame("10.0.0.1", "10.0.0.2", 7, 9))])],
        {},
        capture_index=4,
    )
    assert next(stream).capture_index.tolist() == [4]


def test_unknown_config_key_is_refused():
    with pytest.raises(ValueError, match="mask_adresses"):
        cut_flows([], {"mask_adresses": True})
