"""The compiled flow cutter against a plain Python statement of the same rules, on
random traffic with colliding endpoints, TCP flags, long gaps and fragments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_flows_support import ip_frame, packet_batch, tcp_frame, udp_frame

from stfe_jax.flows import FlowBatch, cut_flows
from stfe_jax.flows.options import CLOSE_WAIT_S, FRAGMENT_TIMEOUT_S, FlowOptions
from stfe_jax.synth import packets as pk

NS = 10**9
T0 = 1_600_000_000 * NS
P, B = 4, 48
CONFIG = {
    "packets_per_flow": P,
    "bytes_per_packet": B,
    "idle_timeout_s": 30.0,
    "active_timeout_s": 200.0,
}


def random_traffic(seed: int, n: int) -> list[tuple[int, bytes]]:
    """Packets between a few hosts and ports, so that flows collide and reopen."""
    rng = np.random.default_rng(seed)
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    records, t = [], T0
    for _ in range(n):
        t += int(
            rng.choice([1_000, 50_000_000, 3 * NS, 40 * NS], p=[0.5, 0.3, 0.15, 0.05])
        )
        a, b = rng.choice(hosts, 2, replace=False)
        sport, dport = (int(x) for x in rng.choice([80, 1234, 5353], 2))
        kind = rng.choice(
            ["tcp", "udp", "icmp", "frag", "error"], p=[0.55, 0.2, 0.1, 0.1, 0.05]
        )
        if kind == "tcp":
            flags = str(rng.choice(["S", "SA", "A", "PA", "FA", "R", "A"]))
            payload = bytes(int(rng.integers(0, 40)))
            frame = tcp_frame(a, b, sport, dport, flags, payload=payload)
        elif kind == "udp":
            frame = udp_frame(a, b, sport, dport, bytes(int(rng.integers(0, 30))))
        elif kind == "icmp":
            frame = ip_frame(a, b, pk.icmp_echo(ident=1, seq=2), pk.IPPROTO_ICMP)
        elif kind == "error":
            # b reports a's packet to b (TCP or UDP) unreachable.
            quoted = (
                udp_frame(a, b, sport, dport, b"x")
                if rng.random() < 0.5
                else tcp_frame(a, b, sport, dport, "S")
            )[14 : 14 + 28]
            message = pk.icmp(3, 3, bytes(4) + quoted)
            frame = ip_frame(b, a, message, pk.IPPROTO_ICMP)
        else:
            ident = int(rng.integers(0, 3))
            body = pk.udp(src_port=sport, dst_port=dport, payload=bytes(24))
            # A first fragment, then often its second part right after it.
            frame = ip_frame(a, b, body[16:], 17, ident=ident, frag_offset_bytes=16)
            if rng.random() < 0.6:
                first = ip_frame(a, b, body[:16], 17, ident=ident, more_fragments=True)
                records.append((t, first))
                t += 1000
            if rng.random() < 0.3:
                continue
        records.append((t, frame))
    return records


def reference_flows(batch, options: FlowOptions) -> list[dict]:
    """The flow rules, one packet at a time, in plain Python."""
    idle, active = options.idle_timeout_s * NS, options.active_timeout_s * NS
    close_wait, frag_timeout = CLOSE_WAIT_S * NS, FRAGMENT_TIMEOUT_S * NS
    flows, fragments, ended = {}, {}, []
    for i in range(len(batch)):
        ts = int(batch.ts_ns[i])
        src, dst = bytes(batch.src_addr[i]), bytes(batch.dst_addr[i])
        proto = int(batch.protocol[i])
        ports = proto in (6, 17, 33, 132)
        sport = int(batch.src_port[i]) if ports else 0
        dport = int(batch.dst_port[i]) if ports else 0
        frag_key = (src, dst, proto, int(batch.ip_id[i]))
        if batch.is_fragment[i] and batch.frag_offset[i] == 0:
            fragments[frag_key] = (sport, dport, ts)
        elif batch.is_fragment[i]:
            first = fragments.get(frag_key)
            if first is None or abs(ts - first[2]) > frag_timeout:
                continue
            sport, dport = first[0], first[1]
        key_proto = proto
        quoted = quoted_five_tuple(batch, i)
        if quoted is not None:
            q_src, q_dst, q_proto, q_sport, q_dport = quoted
            q_key = (q_proto, *sorted([(q_src, q_sport), (q_dst, q_dport)]))
            q_flow = flows.get(q_key)
            if (
                q_flow is not None
                and q_flow["fin"] != 3
                and ts - q_flow["end_ns"] <= idle
                and ts - q_flow["start_ns"] <= active
            ):
                src, dst, sport, dport = q_dst, q_src, q_dport, q_sport
                key_proto = q_proto
        src_lo = (src, sport) <= (dst, dport)
        key = (key_proto, *sorted([(src, sport), (dst, dport)]))
        flags = int(batch.tcp_flags[i]) if proto == 6 else 0
        flow = flows.get(key)
        if flow is not None:
            gap = ts - flow["end_ns"]
            if flow["fin"] == 3 and not (flags == 0x10 and gap <= close_wait):
                ended.append(flows.pop(key))
            elif gap > idle or ts - flow["start_ns"] > active:
                ended.append(flows.pop(key))
        if key not in flows:
            flows[key] = {
                "start_ns": ts, "end_ns": ts, "init_lo": src_lo, "src": src,
                "sport": sport, "dport": dport, "rows": [], "count": 0, "fwd": 0,
                "fin": 0, "flags": 0,
            }  # fmt: skip
        flow = flows[key]
        direction = 0 if src_lo == flow["init_lo"] else 1
        if len(flow["rows"]) < options.packets_per_flow:
            start = int(batch.data_start[i] + batch.net_offset[i])
            caplen = int(batch.caplen[i] - batch.net_offset[i])
            iat = (ts - flow["end_ns"]) * 1e-9 if flow["rows"] else 0.0
            flow["rows"].append(
                (bytes(batch.data[start : start + caplen]), caplen, direction, iat)
            )
        flow["end_ns"] = ts
        flow["count"] += 1
        flow["fwd"] += direction == 0
        flow["flags"] |= flags
        if flags & 0x04:
            ended.append(flows.pop(key))
        elif flags & 0x01:
            flow["fin"] |= 1 << direction
        elif flow["fin"] == 3 and flags == 0x10:
            ended.append(flows.pop(key))
    return ended + list(flows.values())


def quoted_five_tuple(batch, i: int):
    """(src, dst, protocol, src port, dst port) quoted by an ICMP (IPv4) port or
    host unreachable, or None."""
    if batch.protocol[i] != 1 or batch.l4_offset[i] < 0 or batch.is_fragment[i]:
        return None
    packet = bytes(batch.packet_bytes(i))
    icmp = int(batch.l4_offset[i])
    if packet[icmp] not in (3, 4, 5, 11, 12) or len(packet) < icmp + 8 + 20:
        return None
    inner = packet[icmp + 8 :]
    header_len = (inner[0] & 0x0F) * 4
    protocol = inner[9]
    ports = (0, 0)
    if protocol in (6, 17, 33, 132):
        if len(inner) < header_len + 4:
            return None
        ports = (
            int.from_bytes(inner[header_len : header_len + 2], "big"),
            int.from_bytes(inner[header_len + 2 : header_len + 4], "big"),
        )
    prefix = bytes(10) + b"\xff\xff"
    return prefix + inner[12:16], prefix + inner[16:20], protocol, *ports


def as_rows(flows: FlowBatch) -> list[tuple]:
    """Flows as comparable tuples, sorted."""
    rows = []
    for i in range(len(flows)):
        n = int(flows.n_packets[i])
        rows.append(
            (
                int(flows.start_ns[i]),
                bytes(flows.src_addr[i]),
                int(flows.src_port[i]),
                int(flows.dst_port[i]),
                int(flows.end_ns[i]),
                int(flows.packet_count[i]),
                int(flows.fwd_packet_count[i]),
                int(flows.tcp_flags_seen[i]),
                tuple(flows.packet_caplen[i, :n].tolist()),
                tuple(flows.direction[i, :n].tolist()),
                tuple(np.round(flows.iat_s[i, :n].astype(np.float64), 6).tolist()),
                flows.packets[i, :n].tobytes(),
                bool(flows.packets[i, n:].any() or flows.packet_caplen[i, n:].any()),
            )
        )
    return sorted(rows)


def reference_rows(flows: list[dict]) -> list[tuple]:
    rows = []
    for f in flows:
        padded = b"".join(r[0][:B].ljust(B, b"\0") for r in f["rows"])
        rows.append(
            (
                f["start_ns"],
                f["src"],
                f["sport"],
                f["dport"],
                f["end_ns"],
                f["count"],
                f["fwd"],
                f["flags"],
                tuple(r[1] for r in f["rows"]),
                tuple(r[2] for r in f["rows"]),
                tuple(round(float(np.float32(r[3])), 6) for r in f["rows"]),
                padded,
                False,
            )
        )
    return sorted(rows)


@pytest.mark.parametrize("seed, batch_size", [(0, None), (1, 1), (2, 37), (3, 500)])
def test_compiled_cutter_matches_the_reference(seed, batch_size):
    records = random_traffic(seed, 1500)
    whole = packet_batch(records)
    options = FlowOptions.from_config(
        {**CONFIG, "mask_addresses": False, "mask_ports": False}
    )
    if batch_size is None:
        batches = [whole]
    else:
        batches = [
            packet_batch(records[i : i + batch_size])
            for i in range(0, len(records), batch_size)
        ]
    stream = cut_flows(batches, options)
    parts = list(stream)
    names = [f.name for f in dataclasses.fields(FlowBatch)]
    flows = FlowBatch(
        **{n: np.concatenate([getattr(p, n) for p in parts]) for n in names}
    )
    expected = reference_rows(reference_flows(whole, options))
    assert len(expected) > 100
    assert stream.stats.icmp_errors_attached > 0 and stream.stats.fragments_joined > 0
    assert as_rows(flows) == expected
