"""Synthetic backbone traffic as packet tables: hosts, sessions, probes and floods.

Everything here is generated, vectorised with numpy: a function receives one array
entry per flow (or per packet) and returns a ``PacketTable``. ``background`` mixes
the ordinary traffic of a backbone link (web sessions, DNS, NTP, ICMP echo, QUIC-like
UDP, some of it seen in one direction only); the packet builders (``tcp_packets``,
``udp_packets``, ``icmp_echo_packets``) and session builders are also used to inject
anomalies. Addresses are 16-byte rows, IPv4 as IPv4-mapped IPv6.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import numpy as np

from stfe_jax.synth import frames as fr
from stfe_jax.synth import packets as p

SECOND_NS = 1_000_000_000

# Initial TTLs of common stacks; the hop count to the link is subtracted.
INITIAL_TTLS = np.array([64, 128, 255])


# --- addresses ----------------------------------------------------------------------


def v4_addresses(values: np.ndarray) -> np.ndarray:
    """(n,) uint32 IPv4 addresses -> (n, 16) uint8 IPv4-mapped IPv6 addresses."""
    values = np.asarray(values, dtype=np.uint32)
    out = np.zeros((len(values), 16), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:16] = values.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out


def is_v4(addresses: np.ndarray) -> np.ndarray:
    """Per row of (n, 16) addresses: is it an IPv4-mapped (IPv4) address."""
    return np.all(addresses[:, :10] == 0, axis=1) & np.all(
        addresses[:, 10:12] == 0xFF, axis=1
    )


def address_bytes(text: str) -> np.ndarray:
    """(16,) uint8 form of an address string (IPv4 as IPv4-mapped IPv6)."""
    value = ipaddress.ip_address(text)
    if value.version == 4:
        value = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + value.packed)
    return np.frombuffer(value.packed, dtype=np.uint8)


def address_text(address: np.ndarray) -> str:
    """The usual text form of one 16-byte address ("1.2.3.4" or "2001:db8::1")."""
    value = ipaddress.IPv6Address(bytes(address))
    return str(value.ipv4_mapped) if value.ipv4_mapped else str(value)


def public_v4(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` distinct random unicast IPv4 addresses outside private ranges."""
    chosen = np.zeros(0, dtype=np.uint32)
    while len(chosen) < count:
        draw = rng.integers(0x01000000, 0xE0000000, 2 * count, dtype=np.uint32)
        first = draw >> 24
        bad = np.isin(first, [0, 10, 127])
        bad |= (draw >> 16) == 0xA9FE  # 169.254/16
        bad |= (draw >> 20) == 0xAC1  # 172.16/12
        bad |= (draw >> 16) == 0xC0A8  # 192.168/16
        bad |= (draw >> 22) == (0x64400000 >> 22)  # 100.64/10
        chosen = np.unique(np.concatenate([chosen, draw[~bad]]))
    return rng.permutation(chosen)[:count]


def _random_v6(
    rng: np.random.Generator, prefixes: np.ndarray, count: int
) -> np.ndarray:
    """``count`` distinct addresses, each in one of the given /48 ``prefixes``."""
    out = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    out[:, :6] = prefixes[rng.integers(0, len(prefixes), count)]
    out[:, 6:8] = 0  # subnet 0 of the /48, like many sites
    unique = np.unique(out, axis=0)
    return unique[rng.permutation(len(unique))]


@dataclasses.dataclass
class HostPool:
    """The addresses of one synthetic day, random but fixed per host.

    The monitored link joins an inside network (a few /16 IPv4 prefixes and /48
    IPv6 prefixes) to the rest of the Internet. Addresses look scrambled, as in
    MAWI traces, but every host keeps its address all day.

    Attributes:
      inside_v4, outside_v4, inside_v6, outside_v6: (n, 16) uint8 host addresses.
      inside_prefixes_v4: (k,) uint32, the inside /16 prefixes (address >> 16).
    """

    inside_v4: np.ndarray
    outside_v4: np.ndarray
    inside_v6: np.ndarray
    outside_v6: np.ndarray
    inside_prefixes_v4: np.ndarray

    def inside_random_v4(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` distinct addresses anywhere in the inside /16 prefixes."""
        values = np.zeros(0, dtype=np.uint32)
        while len(values) < count:
            prefix = self.inside_prefixes_v4[
                rng.integers(0, len(self.inside_prefixes_v4), 2 * count)
            ]
            draw = (prefix << 16) | rng.integers(1, 0xFFFF, 2 * count, dtype=np.uint32)
            values = np.unique(np.concatenate([values, draw]))
        return v4_addresses(rng.permutation(values)[:count])


def make_host_pool(
    rng: np.random.Generator,
    *,
    n_inside_v4: int = 4000,
    n_outside_v4: int = 20000,
    n_inside_v6: int = 400,
    n_outside_v6: int = 1500,
) -> HostPool:
    """Draw the hosts of one day (counts of hosts per side and IP version)."""
    prefixes = np.unique(public_v4(rng, 16) >> 16)[:4]
    low = rng.permutation(np.arange(1, 0xFFFF, dtype=np.uint32))
    inside = (prefixes[np.arange(n_inside_v4) % len(prefixes)] << 16) | low[
        :n_inside_v4
    ]
    outside = public_v4(rng, n_outside_v4 + n_inside_v4)
    outside = outside[~np.isin(outside >> 16, prefixes)][:n_outside_v4]

    inside_prefixes_v6 = np.zeros((2, 6), dtype=np.uint8)
    inside_prefixes_v6[:, 0:2] = (0x20, 0x01)
    inside_prefixes_v6[:, 2:6] = rng.integers(0, 256, (2, 4))
    outside_prefixes_v6 = rng.integers(0, 256, (200, 6), dtype=np.uint8)
    outside_prefixes_v6[:, 0] = 0x20
    outside_prefixes_v6[:, 1] = rng.choice([0x01, 0x02, 0x03, 0x04, 0x06], 200)
    return HostPool(
        inside_v4=v4_addresses(inside),
        outside_v4=v4_addresses(outside),
        inside_v6=_random_v6(rng, inside_prefixes_v6, n_inside_v6),
        outside_v6=_random_v6(rng, outside_prefixes_v6, n_outside_v6),
        inside_prefixes_v4=prefixes,
    )


# --- packets ------------------------------------------------------------------------


def _ip_header_len(src: np.ndarray) -> np.ndarray:
    """20 for IPv4 rows, 40 for IPv6 rows."""
    return np.where(is_v4(src), 20, 40)


def tcp_packets(
    *,
    ts_ns,
    src,
    dst,
    src_port,
    dst_port,
    flags,
    outbound,
    seq=0,
    ack=0,
    window=65535,
    options=fr.TCP_OPTIONS_NONE,
    tsval=0,
    tsecr=0,
    ttl=64,
    ip_id=0,
    payload=0,
    flow_label=0,
    anomaly=-1,
) -> fr.PacketTable:
    """One TCP segment per entry (arrays or scalars broadcast).

    Args:
      ts_ns: timestamps, ns since the Unix epoch.
      src, dst: (n, 16) addresses.
      payload: bytes of payload on the wire (not kept in the capture).
      options: ``TCP_OPTIONS_*``; the others are the header fields.
    """
    count = len(src)
    options = np.broadcast_to(np.asarray(options, dtype=np.uint8), (count,))
    ip_length = (
        _ip_header_len(src) + 20 + fr.TCP_OPTIONS_LEN[options] + np.asarray(payload)
    )
    return fr.PacketTable.make(
        count,
        ts_ns=ts_ns,
        ip_version=np.where(is_v4(src), 4, 6),
        src_addr=src,
        dst_addr=dst,
        protocol=p.IPPROTO_TCP,
        src_port=src_port,
        dst_port=dst_port,
        tcp_flags=flags,
        tcp_seq=np.asarray(seq) & 0xFFFFFFFF,
        tcp_ack=np.asarray(ack) & 0xFFFFFFFF,
        tcp_window=window,
        tcp_options=options,
        tcp_tsval=np.asarray(tsval) & 0xFFFFFFFF,
        tcp_tsecr=np.asarray(tsecr) & 0xFFFFFFFF,
        ttl=ttl,
        ip_id=np.asarray(ip_id) & 0xFFFF,
        dont_fragment=True,
        flow_label=np.where(is_v4(src), 0, np.asarray(flow_label) & 0xFFFFF),
        ip_length=ip_length,
        outbound=outbound,
        anomaly=anomaly,
    )


def udp_packets(
    *,
    ts_ns,
    src,
    dst,
    src_port,
    dst_port,
    payload,
    outbound,
    ttl=64,
    ip_id=0,
    dont_fragment=False,
    flow_label=0,
    anomaly=-1,
) -> fr.PacketTable:
    """One UDP datagram per entry; ``payload`` in bytes (not kept)."""
    count = len(src)
    return fr.PacketTable.make(
        count,
        ts_ns=ts_ns,
        ip_version=np.where(is_v4(src), 4, 6),
        src_addr=src,
        dst_addr=dst,
        protocol=p.IPPROTO_UDP,
        src_port=src_port,
        dst_port=dst_port,
        ttl=ttl,
        ip_id=np.asarray(ip_id) & 0xFFFF,
        dont_fragment=dont_fragment,
        flow_label=np.where(is_v4(src), 0, np.asarray(flow_label) & 0xFFFFF),
        ip_length=_ip_header_len(src) + 8 + np.asarray(payload),
        outbound=outbound,
        anomaly=anomaly,
    )


def icmp_echo_packets(
    *,
    ts_ns,
    src,
    dst,
    reply,
    icmp_id,
    icmp_seq,
    payload,
    outbound,
    ttl=64,
    ip_id=0,
    flow_label=0,
    anomaly=-1,
) -> fr.PacketTable:
    """One ICMP (IPv4) or ICMPv6 (IPv6) echo request or reply per entry."""
    count = len(src)
    v4 = is_v4(src)
    reply = np.broadcast_to(np.asarray(reply, dtype=bool), (count,))
    icmp_type = np.where(v4, np.where(reply, 0, 8), np.where(reply, 129, 128))
    return fr.PacketTable.make(
        count,
        ts_ns=ts_ns,
        ip_version=np.where(v4, 4, 6),
        src_addr=src,
        dst_addr=dst,
        protocol=np.where(v4, p.IPPROTO_ICMP, p.IPPROTO_ICMPV6),
        icmp_type=icmp_type,
        icmp_id=icmp_id,
        icmp_seq=icmp_seq,
        ttl=ttl,
        ip_id=np.asarray(ip_id) & 0xFFFF,
        flow_label=np.where(v4, 0, np.asarray(flow_label) & 0xFFFFF),
        ip_length=_ip_header_len(src) + 8 + np.asarray(payload),
        outbound=outbound,
        anomaly=anomaly,
    )


# --- flows --------------------------------------------------------------------------


def _positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For flows of ``counts`` packets: each packet's flow index and position."""
    counts = np.asarray(counts, dtype=np.int64)
    flow = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return flow, np.arange(counts.sum()) - starts[flow]


def _cumsum_in_flow(values: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Inclusive running sum of ``values`` within each flow (packets grouped)."""
    total = np.cumsum(values)
    first = np.r_[True, flow[1:] != flow[:-1]]
    offsets = (total - values)[first]
    return total - offsets[np.cumsum(first) - 1]


def _pick(a: np.ndarray, flow: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Per packet, column ``direction`` of per-flow pair array ``a`` (n_flows, 2)."""
    return a[flow, direction]


def _per_direction(rng, count, choices) -> np.ndarray:
    """A (count, 2) array of values drawn from ``choices``, one per flow direction."""
    return rng.choice(choices, (count, 2))


def _ttls(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 2) TTLs seen on the link, per flow and direction."""
    initial = rng.choice(INITIAL_TTLS, (count, 2), p=[0.55, 0.4, 0.05])
    return initial - rng.integers(3, 26, (count, 2))


def tcp_sessions(
    rng: np.random.Generator,
    *,
    client: np.ndarray,
    server: np.ndarray,
    client_port,
    server_port,
    start_ns,
    n_data,
    rtt_s,
    data_gap_s,
    client_outbound,
    one_way=0,
    reset=False,
    timestamps=True,
    anomaly=-1,
) -> fr.PacketTable:
    """Whole TCP connections: handshake, data, and FIN exchange (or a reset).

    The client sends the first data segment (the request); then the server sends
    data and the client acknowledges every third segment.

    Args:
      client, server: (n, 16) addresses, one connection per row.
      client_port, server_port: ports per connection.
      start_ns: time of the SYN, ns since the Unix epoch.
      n_data: data and acknowledgement segments between handshake and close.
      rtt_s: round-trip time per connection, seconds.
      data_gap_s: mean time between data segments per connection, seconds.
      client_outbound: whether the client's frames leave the inside network.
      one_way: 0 both directions seen, 1 only client-to-server packets seen, 2 only
        server-to-client ones (asymmetric routing).
      reset: end with a RST from the client instead of the FIN exchange.
      timestamps: segments after the handshake carry the TCP timestamps option.
      anomaly: anomaly index of the packets (-1 background).
    """
    count = len(client)
    every = {
        name: np.broadcast_to(np.asarray(value), (count,))
        for name, value in dict(
            client_port=client_port,
            server_port=server_port,
            start_ns=start_ns,
            n_data=n_data,
            rtt_s=rtt_s,
            data_gap_s=data_gap_s,
            client_outbound=client_outbound,
            one_way=one_way,
            reset=reset,
            timestamps=timestamps,
            anomaly=anomaly,
        ).items()
    }
    n_data = every["n_data"].astype(np.int64)
    reset = every["reset"].astype(bool)
    n_close = np.where(reset, 1, 3)
    flow, position = _positions(3 + n_data + n_close)
    data_index = position - 3
    close_index = position - 3 - n_data[flow]
    in_data = (data_index >= 0) & (close_index < 0)
    in_close = close_index >= 0

    direction = np.zeros(len(flow), dtype=np.int64)  # 0 client->server, 1 back
    direction[position == 1] = 1
    server_sends = in_data & (data_index > 0) & (data_index % 3 != 2)
    direction[server_sends] = 1
    direction[in_close & (close_index == 1) & ~reset[flow]] = 1

    flags = np.full(len(flow), p.TCP_ACK, dtype=np.uint8)
    flags[position == 0] = p.TCP_SYN
    flags[position == 1] = p.TCP_SYN | p.TCP_ACK
    flags[in_data & (data_index == 0)] = p.TCP_PSH | p.TCP_ACK
    last_data = in_data & (data_index == n_data[flow] - 1) & (direction == 1)
    flags[(server_sends & (data_index % 4 == 1)) | last_data] = p.TCP_PSH | p.TCP_ACK
    closing_fin = in_close & ~reset[flow] & (close_index < 2)
    flags[closing_fin] = p.TCP_FIN | p.TCP_ACK
    flags[in_close & reset[flow]] = p.TCP_RST | p.TCP_ACK

    v6 = ~is_v4(client)[flow]
    full_segment = np.where(v6, 1428, 1448)
    payload = np.zeros(len(flow), dtype=np.int64)
    request = in_data & (data_index == 0)
    payload[request] = rng.integers(60, 700, request.sum())
    full = rng.random(len(flow)) < 0.75
    tail = rng.integers(1, 1448, len(flow))
    payload[server_sends] = np.where(
        full, full_segment, np.minimum(tail, full_segment)
    )[server_sends]

    seq_len = payload + ((flags & (p.TCP_SYN | p.TCP_FIN)) != 0)
    own = [_cumsum_in_flow(np.where(direction == d, seq_len, 0), flow) for d in (0, 1)]
    isn = rng.integers(0, 2**32, (count, 2), dtype=np.uint64)
    seq = _pick(isn, flow, direction) + np.where(
        direction == 0, own[0] - seq_len, own[1] - seq_len
    ).astype(np.uint64)
    received = np.where(direction == 0, own[1], own[0]).astype(np.uint64)
    ack = np.where(flags & p.TCP_ACK, _pick(isn, flow, 1 - direction) + received, 0)

    rtt_ns = (every["rtt_s"] * SECOND_NS).astype(np.int64)
    gap_mean = every["data_gap_s"].astype(float)[flow] * SECOND_NS
    gaps = rng.exponential(1.0, len(flow)) * gap_mean
    gaps[position == 0] = 0
    gaps[position == 1] = rtt_ns[flow][position == 1] * rng.uniform(0.3, 0.7)
    gaps[position == 2] = rtt_ns[flow][position == 2] * rng.uniform(0.3, 0.7)
    elapsed_ns = _cumsum_in_flow(gaps.astype(np.int64), flow)
    ts_ns = every["start_ns"].astype(np.int64)[flow] + elapsed_ns

    is_syn = (flags & p.TCP_SYN) != 0
    options = np.where(
        is_syn,
        fr.TCP_OPTIONS_SYN,
        np.where(
            every["timestamps"].astype(bool)[flow],
            fr.TCP_OPTIONS_TIMESTAMPS,
            fr.TCP_OPTIONS_NONE,
        ),
    )
    clock = rng.integers(0, 2**32, (count, 2), dtype=np.int64)
    elapsed_ms = elapsed_ns // 1_000_000
    tsval = _pick(clock, flow, direction) + elapsed_ms
    tsecr = _pick(clock, flow, 1 - direction) + np.maximum(
        0, elapsed_ms - rtt_ns[flow] // 2_000_000
    )
    tsecr[position == 0] = 0

    windows = _per_direction(rng, count, [501, 502, 1024, 2052, 4096, 16384, 65535])
    window = _pick(windows, flow, direction)
    window[is_syn] = rng.choice([64240, 65535, 29200, 14600], is_syn.sum())
    sent_before = [
        _cumsum_in_flow((direction == d).astype(np.int64), flow) for d in (0, 1)
    ]
    ip_id = _pick(rng.integers(0, 65536, (count, 2)), flow, direction) + np.where(
        direction == 0, sent_before[0], sent_before[1]
    )

    outbound = every["client_outbound"].astype(bool)[flow] ^ (direction == 1)
    src = np.where((direction == 0)[:, None], client[flow], server[flow])
    dst = np.where((direction == 0)[:, None], server[flow], client[flow])
    src_port = np.where(
        direction == 0, every["client_port"][flow], every["server_port"][flow]
    )
    dst_port = np.where(
        direction == 0, every["server_port"][flow], every["client_port"][flow]
    )
    table = tcp_packets(
        ts_ns=ts_ns,
        src=src,
        dst=dst,
        src_port=src_port,
        dst_port=dst_port,
        flags=flags,
        outbound=outbound,
        seq=seq,
        ack=ack,
        window=window,
        options=options,
        tsval=tsval,
        tsecr=tsecr,
        ttl=_pick(_ttls(rng, count), flow, direction),
        ip_id=ip_id,
        payload=payload,
        flow_label=_pick(rng.integers(0, 2**20, (count, 2)), flow, direction),
        anomaly=every["anomaly"][flow],
    )
    one_way = every["one_way"].astype(np.int64)[flow]
    keep = (one_way == 0) | ((one_way == 1) & (direction == 0))
    keep |= (one_way == 2) & (direction == 1)
    return table.take(keep)


def udp_exchanges(
    rng: np.random.Generator,
    *,
    client: np.ndarray,
    server: np.ndarray,
    client_port,
    server_port,
    start_ns,
    n_packets,
    gap_s,
    client_outbound,
    request_bytes,
    response_bytes,
    one_way=0,
    anomaly=-1,
) -> fr.PacketTable:
    """UDP flows whose packets alternate request, response, request, ...

    Args:
      client, server: (n, 16) addresses, one flow per row.
      n_packets: packets per flow (before ``one_way`` drops a direction).
      gap_s: mean seconds between packets, per flow.
      request_bytes, response_bytes: (low, high) payload bytes of requests and
        responses, scalars or per-flow arrays; each packet draws in that range.
      one_way: 0 both directions seen, 1 only requests, 2 only responses.
    """
    count = len(client)
    n_packets = np.broadcast_to(np.asarray(n_packets, dtype=np.int64), (count,))
    flow, position = _positions(n_packets)
    direction = position % 2
    low = np.where(
        direction == 0,
        np.broadcast_to(request_bytes[0], (count,))[flow],
        np.broadcast_to(response_bytes[0], (count,))[flow],
    )
    high = np.where(
        direction == 0,
        np.broadcast_to(request_bytes[1], (count,))[flow],
        np.broadcast_to(response_bytes[1], (count,))[flow],
    )
    payload = rng.integers(low, high + 1)
    gap_mean = np.broadcast_to(np.asarray(gap_s, dtype=float), (count,))[flow]
    gaps = (rng.exponential(1.0, len(flow)) * gap_mean * SECOND_NS).astype(np.int64)
    gaps[position == 0] = 0
    ts_ns = np.broadcast_to(np.asarray(start_ns, dtype=np.int64), (count,))[flow]
    ts_ns = ts_ns + _cumsum_in_flow(gaps, flow)
    client_port = np.broadcast_to(np.asarray(client_port), (count,))[flow]
    server_port = np.broadcast_to(np.asarray(server_port), (count,))[flow]
    outbound = np.broadcast_to(np.asarray(client_outbound, dtype=bool), (count,))
    sent_before = _cumsum_in_flow(np.ones(len(flow), dtype=np.int64), flow)
    table = udp_packets(
        ts_ns=ts_ns,
        src=np.where((direction == 0)[:, None], client[flow], server[flow]),
        dst=np.where((direction == 0)[:, None], server[flow], client[flow]),
        src_port=np.where(direction == 0, client_port, server_port),
        dst_port=np.where(direction == 0, server_port, client_port),
        payload=payload,
        outbound=outbound[flow] ^ (direction == 1),
        ttl=_pick(_ttls(rng, count), flow, direction),
        ip_id=_pick(rng.integers(0, 65536, (count, 2)), flow, direction) + sent_before,
        dont_fragment=_pick(rng.random((count, 2)) < 0.5, flow, direction),
        flow_label=_pick(rng.integers(0, 2**20, (count, 2)), flow, direction),
        anomaly=np.broadcast_to(np.asarray(anomaly), (count,))[flow],
    )
    one_way = np.broadcast_to(np.asarray(one_way), (count,))[flow]
    keep = (one_way == 0) | ((one_way == 1) & (direction == 0))
    keep |= (one_way == 2) & (direction == 1)
    return table.take(keep)


def icmp_echo_flows(
    rng: np.random.Generator,
    *,
    client: np.ndarray,
    server: np.ndarray,
    start_ns,
    n_requests,
    interval_s,
    rtt_s,
    reply_probability,
    client_outbound,
    payload=56,
    anomaly=-1,
) -> fr.PacketTable:
    """Ping sessions: echo requests every ``interval_s`` seconds and their replies.

    Each reply follows its request by ``rtt_s`` and is seen with probability
    ``reply_probability`` (per flow). ``payload`` is the echo data in bytes.
    """
    count = len(client)
    n_requests = np.broadcast_to(np.asarray(n_requests, dtype=np.int64), (count,))
    flow, position = _positions(2 * n_requests)
    request_index = position // 2
    reply = position % 2 == 1
    interval_s = np.broadcast_to(np.asarray(interval_s, dtype=float), (count,))
    rtt_s = np.broadcast_to(np.asarray(rtt_s, dtype=float), (count,))
    ts_ns = np.broadcast_to(np.asarray(start_ns, dtype=np.int64), (count,))[flow]
    ts_ns = ts_ns + (request_index * interval_s[flow] * SECOND_NS).astype(np.int64)
    ts_ns = ts_ns + np.where(reply, rtt_s[flow] * SECOND_NS, 0).astype(np.int64)
    outbound = np.broadcast_to(np.asarray(client_outbound, dtype=bool), (count,))
    table = icmp_echo_packets(
        ts_ns=ts_ns,
        src=np.where(reply[:, None], server[flow], client[flow]),
        dst=np.where(reply[:, None], client[flow], server[flow]),
        reply=reply,
        icmp_id=rng.integers(1, 65536, count)[flow],
        icmp_seq=request_index + 1,
        payload=np.broadcast_to(np.asarray(payload), (count,))[flow],
        outbound=outbound[flow] ^ reply,
        ttl=_pick(_ttls(rng, count), flow, reply.astype(np.int64)),
        ip_id=_pick(rng.integers(0, 65536, (count, 2)), flow, reply.astype(np.int64))
        + request_index,
        flow_label=rng.integers(0, 2**20, count)[flow],
        anomaly=np.broadcast_to(np.asarray(anomaly), (count,))[flow],
    )
    probability = np.broadcast_to(np.asarray(reply_probability, dtype=float), (count,))
    keep = ~reply | (rng.random(len(flow)) < probability[flow])
    return table.take(keep)


# --- background ---------------------------------------------------------------------


@dataclasses.dataclass
class Background:
    """Background traffic of a day and the hosts that stand out in it.

    Attributes:
      table: the packets.
      busiest_web_server: (16,) address of the most visited web server (port 80).
      busiest_resolver: (16,) address of the most used DNS resolver.
      reserved_inside_v4, reserved_outside_v4: (n, 16) addresses no background
        packet uses, kept for injected anomalies.
    """

    table: fr.PacketTable
    busiest_web_server: np.ndarray
    busiest_resolver: np.ndarray
    reserved_inside_v4: np.ndarray
    reserved_outside_v4: np.ndarray


def _zipf_choice(rng: np.random.Generator, n_items: int, size: int, exponent=1.1):
    """``size`` indexes in ``range(n_items)`` with Zipf-like popularity (0 most)."""
    weights = 1.0 / np.arange(1, n_items + 1) ** exponent
    return rng.choice(n_items, size, p=weights / weights.sum())


def _ephemeral_ports(rng: np.random.Generator, size: int) -> np.ndarray:
    """Client ports as operating systems pick them (IANA and Linux ranges)."""
    return rng.integers(32768, 65536, size)


def background(
    rng: np.random.Generator,
    hosts: HostPool,
    *,
    start_ns: int,
    duration_s: float,
    scale: float = 1.0,
) -> Background:
    """The ordinary traffic of a backbone link for ``duration_s`` seconds.

    Web sessions (TCP to 443, 80 and other services), DNS, NTP, QUIC-like UDP and
    ICMP echo, about a tenth over IPv6, a fifth of the TCP sessions seen in one
    direction only. ``scale`` multiplies the number of flows (1.0: about 10 k
    flows and 100 k packets).
    """

    def scaled(count: int) -> int:
        return max(1, round(count * scale))

    inside_v4, outside_v4 = hosts.inside_v4, hosts.outside_v4
    reserved_inside, inside_v4 = inside_v4[:200], inside_v4[200:]
    reserved_outside, outside_v4 = outside_v4[:3000], outside_v4[3000:]
    web_servers = outside_v4[:800]
    resolvers = np.concatenate([outside_v4[800:808], inside_v4[150:154]])
    ntp_servers = outside_v4[808:818]
    clients_out = outside_v4[818:]
    inside_servers = inside_v4[:150]
    clients_in = inside_v4[154:]
    tables = []

    def flow_starts(count: int, longest_s: float = 30.0) -> np.ndarray:
        seconds = rng.uniform(0, max(1.0, duration_s - longest_s), count)
        return start_ns + (seconds * SECOND_NS).astype(np.int64)

    # Web and other TCP services.
    n_tcp = scaled(5000)
    v6 = rng.random(n_tcp) < 0.1
    inward = rng.random(n_tcp) < 0.3  # outside client, inside server
    server_rank = _zipf_choice(rng, len(web_servers), n_tcp)
    client = clients_in[rng.integers(0, len(clients_in), n_tcp)]
    server = web_servers[server_rank]
    client[inward] = clients_out[rng.integers(0, len(clients_out), inward.sum())]
    server[inward] = inside_servers[
        _zipf_choice(rng, len(inside_servers), inward.sum())
    ]
    client[v6] = hosts.inside_v6[rng.integers(0, len(hosts.inside_v6), v6.sum())]
    server[v6] = hosts.outside_v6[_zipf_choice(rng, len(hosts.outside_v6), v6.sum())]
    service = rng.choice(
        [443, 80, 22, 25, 993, 8080, 5222, 3389, 1935, 8443],
        n_tcp,
        p=[0.55, 0.3, 0.03, 0.03, 0.02, 0.02, 0.01, 0.01, 0.01, 0.02],
    )
    service[~inward & ~v6 & (server_rank == 0)] = 80
    service[~inward & ~v6 & (server_rank != 0) & (service == 80)] = 443
    n_data = np.minimum(
        400, np.floor(rng.lognormal(np.log(6.0), 1.2, n_tcp)).astype(np.int64)
    )
    tables.append(
        tcp_sessions(
            rng,
            client=client,
            server=server,
            client_port=_ephemeral_ports(rng, n_tcp),
            server_port=service,
            start_ns=flow_starts(n_tcp),
            n_data=n_data,
            rtt_s=rng.lognormal(np.log(0.04), 0.8, n_tcp).clip(0.002, 0.6),
            data_gap_s=rng.lognormal(np.log(0.03), 1.0, n_tcp).clip(0.0005, 2.0),
            client_outbound=~inward,
            one_way=rng.choice([0, 1, 2], n_tcp, p=[0.8, 0.1, 0.1]),
            reset=rng.random(n_tcp) < 0.08,
            timestamps=rng.random(n_tcp) < 0.7,
        )
    )

    # DNS: clients of both sides asking resolvers; a few queries go unanswered.
    n_dns = scaled(3000)
    v6 = rng.random(n_dns) < 0.1
    resolver = resolvers[_zipf_choice(rng, len(resolvers), n_dns, exponent=1.5)]
    dns_client = clients_in[rng.integers(0, len(clients_in), n_dns)]
    resolver_inside = is_inside(resolver, hosts)
    dns_client[resolver_inside] = clients_out[
        rng.integers(0, len(clients_out), resolver_inside.sum())
    ]
    resolver[v6] = hosts.outside_v6[rng.integers(0, 20, v6.sum())]
    dns_client[v6] = hosts.inside_v6[rng.integers(0, len(hosts.inside_v6), v6.sum())]
    tables.append(
        udp_exchanges(
            rng,
            client=dns_client,
            server=resolver,
            client_port=_ephemeral_ports(rng, n_dns),
            server_port=53,
            start_ns=flow_starts(n_dns, 2.0),
            n_packets=np.where(rng.random(n_dns) < 0.05, 1, 2),
            gap_s=0.03,
            client_outbound=~resolver_inside,
            request_bytes=(28, 60),
            response_bytes=(44, 480),
        )
    )

    # NTP.
    n_ntp = scaled(400)
    tables.append(
        udp_exchanges(
            rng,
            client=clients_in[rng.integers(0, len(clients_in), n_ntp)],
            server=ntp_servers[rng.integers(0, len(ntp_servers), n_ntp)],
            client_port=np.where(
                rng.random(n_ntp) < 0.5, 123, _ephemeral_ports(rng, n_ntp)
            ),
            server_port=123,
            start_ns=flow_starts(n_ntp, 2.0),
            n_packets=2,
            gap_s=0.02,
            client_outbound=True,
            request_bytes=(48, 48),
            response_bytes=(48, 48),
            one_way=rng.choice([0, 1], n_ntp, p=[0.9, 0.1]),
        )
    )

    # QUIC-like UDP to 443.
    n_quic = scaled(600)
    tables.append(
        udp_exchanges(
            rng,
            client=clients_in[rng.integers(0, len(clients_in), n_quic)],
            server=web_servers[1 + _zipf_choice(rng, len(web_servers) - 1, n_quic)],
            client_port=_ephemeral_ports(rng, n_quic),
            server_port=443,
            start_ns=flow_starts(n_quic),
            n_packets=np.minimum(
                300, 2 + np.floor(rng.lognormal(np.log(10), 1.0, n_quic))
            ).astype(np.int64),
            gap_s=rng.lognormal(np.log(0.02), 1.0, n_quic).clip(0.001, 1.0),
            client_outbound=True,
            request_bytes=(30, 1250),
            response_bytes=(1200, 1350),
            one_way=rng.choice([0, 1, 2], n_quic, p=[0.9, 0.05, 0.05]),
        )
    )

    # ICMP echo: monitoring and probing; many probed hosts never answer.
    n_ping = scaled(600)
    v6 = rng.random(n_ping) < 0.15
    ping_client = clients_out[rng.integers(0, len(clients_out), n_ping)]
    ping_target = inside_v4[rng.integers(0, len(inside_v4), n_ping)]
    ping_client[v6] = hosts.outside_v6[rng.integers(0, len(hosts.outside_v6), v6.sum())]
    ping_target[v6] = hosts.inside_v6[rng.integers(0, len(hosts.inside_v6), v6.sum())]
    tables.append(
        icmp_echo_flows(
            rng,
            client=ping_client,
            server=ping_target,
            start_ns=flow_starts(n_ping, 12.0),
            n_requests=rng.integers(1, 11, n_ping),
            interval_s=1.0,
            rtt_s=rng.lognormal(np.log(0.05), 0.7, n_ping).clip(0.002, 0.8),
            reply_probability=np.where(rng.random(n_ping) < 0.25, 0.0, 0.95),
            client_outbound=False,
            payload=rng.choice([56, 32, 64], n_ping),
        )
    )

    return Background(
        table=fr.PacketTable.concatenate(tables),
        busiest_web_server=web_servers[0],
        busiest_resolver=resolvers[0],
        reserved_inside_v4=reserved_inside,
        reserved_outside_v4=reserved_outside,
    )


def is_inside(addresses: np.ndarray, hosts: HostPool) -> np.ndarray:
    """Per row: does the address belong to the inside network."""
    v4 = is_v4(addresses)
    prefix16 = addresses[:, 12].astype(np.uint32) << 8 | addresses[:, 13]
    inside = v4 & np.isin(prefix16, hosts.inside_prefixes_v4)
    inside_v6_prefixes = np.unique(hosts.inside_v6[:, :6], axis=0)
    for prefix in inside_v6_prefixes:
        inside |= ~v4 & np.all(addresses[:, :6] == prefix, axis=1)
    return inside
