"""Injected anomalies of MAWILab's main kinds, as packet tables with their filters.

Each function builds the packets of one anomaly (scans, floods, a heavy alpha flow)
between the hosts it is given, inside the time window it is given, and returns them
with the MAWILab filters that describe it, written the way MAWILab's own rows for
that kind look (for example a network scan is reported by its source and
destination port, a distributed flood by its victim). All traffic is synthetic.
"""

from __future__ import annotations

import numpy as np

from stfe_jax.synth import frames as fr
from stfe_jax.synth import packets as p
from stfe_jax.synth import traffic
from stfe_jax.synth.mawilab_files import LabelFilter
from stfe_jax.synth.traffic import SECOND_NS, address_text


def _times(rng, start_ns: int, duration_s: float, count: int) -> np.ndarray:
    """``count`` sorted instants spread over the window, ns since the epoch."""
    offsets = np.sort(rng.uniform(0, duration_s, count))
    return start_ns + (offsets * SECOND_NS).astype(np.int64)


def _repeat_row(address: np.ndarray, count: int) -> np.ndarray:
    """A (count, 16) array holding ``address`` on every row."""
    return np.broadcast_to(address, (count, 16)).copy()


def _tcp_answers(
    rng: np.random.Generator,
    probes: fr.PacketTable,
    *,
    synack_probability: float,
    rst_probability: float,
    index: int,
) -> fr.PacketTable:
    """Answers of probed hosts to SYN probes: SYN-ACK or RST-ACK, and the prober's RST.

    A probe draws SYN-ACK with ``synack_probability`` (then the prober resets the
    half-open connection), RST-ACK with ``rst_probability``, else no answer.
    """
    draw = rng.random(len(probes))
    synack = draw < synack_probability
    rst = (draw >= synack_probability) & (draw < synack_probability + rst_probability)
    answered = synack | rst
    rows = np.flatnonzero(answered)
    delay = (rng.lognormal(np.log(0.05), 0.6, len(rows)) * SECOND_NS).astype(np.int64)
    answers = traffic.tcp_packets(
        ts_ns=probes.ts_ns[rows] + delay,
        src=probes.dst_addr[rows],
        dst=probes.src_addr[rows],
        src_port=probes.dst_port[rows],
        dst_port=probes.src_port[rows],
        flags=np.where(synack[rows], p.TCP_SYN | p.TCP_ACK, p.TCP_RST | p.TCP_ACK),
        outbound=~probes.outbound[rows],
        seq=np.where(synack[rows], rng.integers(0, 2**32, len(rows)), 0),
        ack=probes.tcp_seq[rows].astype(np.int64) + 1,
        window=np.where(synack[rows], 29200, 0),
        options=np.where(synack[rows], fr.TCP_OPTIONS_SYN, fr.TCP_OPTIONS_NONE),
        tsval=rng.integers(0, 2**32, len(rows)),
        ttl=rng.choice([52, 57, 116, 121], len(rows)),
        ip_id=rng.integers(0, 65536, len(rows)),
        anomaly=index,
    )
    resets = np.flatnonzero(synack[rows])
    closing = traffic.tcp_packets(
        ts_ns=answers.ts_ns[resets] + 200_000,
        src=answers.dst_addr[resets],
        dst=answers.src_addr[resets],
        src_port=answers.dst_port[resets],
        dst_port=answers.src_port[resets],
        flags=p.TCP_RST,
        outbound=~answers.outbound[resets],
        seq=answers.tcp_ack[resets],
        window=0,
        ttl=probes.ttl[rows][resets],
        ip_id=rng.integers(0, 65536, len(resets)),
        anomaly=index,
    )
    return fr.PacketTable.concatenate([answers, closing])


def _syn_probes(
    rng: np.random.Generator,
    *,
    ts_ns: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    src_port,
    dst_port,
    outbound,
    ttl: int,
    index: int,
) -> fr.PacketTable:
    """Bare SYN probes as scanning tools send them (no options, small window)."""
    count = len(ts_ns)
    return traffic.tcp_packets(
        ts_ns=ts_ns,
        src=src,
        dst=dst,
        src_port=src_port,
        dst_port=dst_port,
        flags=p.TCP_SYN,
        outbound=outbound,
        seq=rng.integers(0, 2**32, count),
        window=rng.choice([1024, 14600, 65535], count),
        ttl=ttl,
        ip_id=rng.integers(0, 65536, count),
        anomaly=index,
    )


def syn_network_scan(
    rng, *, scanner, targets, ports, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One source sends SYNs to each of many ``targets`` on each of ``ports``.

    A few targets answer. MAWILab reports it as source IP and destination port,
    one filter per port (taxonomy ntscSYN).
    """
    n_probes = len(targets) * len(ports)
    probes = _syn_probes(
        rng,
        ts_ns=_times(rng, start_ns, duration_s, n_probes),
        src=_repeat_row(scanner, n_probes),
        dst=np.repeat(targets, len(ports), axis=0)[rng.permutation(n_probes)],
        src_port=rng.integers(1024, 65536, n_probes),
        dst_port=rng.choice(ports, n_probes),
        outbound=False,
        ttl=int(rng.integers(230, 250)),
        index=index,
    )
    answers = _tcp_answers(
        rng, probes, synack_probability=0.03, rst_probability=0.12, index=index
    )
    filters = [
        LabelFilter(src_ip=address_text(scanner), dst_port=int(port), proto="tcp")
        for port in ports
    ]
    return fr.PacketTable.concatenate([probes, answers]), filters


def port_scan(
    rng, *, scanner, target, ports, open_ports, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One source sends SYNs to many ``ports`` of one ``target`` from one port.

    Closed ports answer RST-ACK, ``open_ports`` SYN-ACK. MAWILab reports it as the
    source and destination IPs (taxonomy poscaSYN).
    """
    ports = np.asarray(ports)
    count = len(ports)
    probes = _syn_probes(
        rng,
        ts_ns=_times(rng, start_ns, duration_s, count),
        src=_repeat_row(scanner, count),
        dst=_repeat_row(target, count),
        src_port=int(rng.integers(32768, 65536)),
        dst_port=rng.permutation(ports),
        outbound=False,
        ttl=int(rng.integers(40, 60)),
        index=index,
    )
    is_open = np.isin(probes.dst_port, open_ports)
    open_answers = _tcp_answers(
        rng,
        probes.take(is_open),
        synack_probability=1.0,
        rst_probability=0.0,
        index=index,
    )
    closed_answers = _tcp_answers(
        rng,
        probes.take(~is_open),
        synack_probability=0.0,
        rst_probability=0.95,
        index=index,
    )
    filters = [LabelFilter(src_ip=address_text(scanner), dst_ip=address_text(target))]
    return fr.PacketTable.concatenate([probes, open_answers, closed_answers]), filters


def syn_flood(
    rng,
    *,
    sources,
    victim,
    port,
    syns_per_source,
    start_ns,
    duration_s,
    index,
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """Many (spoofed) ``sources`` send SYNs to one victim port, with retransmissions.

    The victim answers part of them with SYN-ACKs to the spoofed addresses
    (backscatter). MAWILab reports it by the victim's address (taxonomy DDoSSYN).
    """
    n_sources = len(sources)
    per_source = np.asarray(syns_per_source)
    source = np.repeat(np.arange(n_sources), per_source)
    first = _times(rng, start_ns, duration_s * 0.8, n_sources)
    retry = np.arange(len(source)) - np.repeat(
        np.cumsum(per_source) - per_source, per_source
    )
    backoff_ns = (2.0**retry - 1) * SECOND_NS * rng.uniform(0.9, 1.1, len(source))
    src_ports = rng.integers(1024, 65536, n_sources)
    seqs = rng.integers(0, 2**32, n_sources)
    probes = _syn_probes(
        rng,
        ts_ns=first[source] + backoff_ns.astype(np.int64),
        src=sources[source],
        dst=_repeat_row(victim, len(source)),
        src_port=src_ports[source],
        dst_port=port,
        outbound=False,
        ttl=rng.integers(100, 250, n_sources)[source],
        index=index,
    )
    probes.tcp_seq[:] = seqs[source]
    answers = _tcp_answers(
        rng, probes, synack_probability=0.3, rst_probability=0.0, index=index
    )
    answers = answers.take((answers.tcp_flags & p.TCP_SYN) != 0)  # spoofed: no RST
    filters = [LabelFilter(dst_ip=address_text(victim), proto="tcp")]
    return fr.PacketTable.concatenate([probes, answers]), filters


def point_to_point_syn_flood(
    rng, *, source, victim, port, n_syns, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One source floods one victim port with SYNs from changing source ports.

    MAWILab reports it by both addresses and the port (taxonomy ptpDoSSYN).
    """
    probes = _syn_probes(
        rng,
        ts_ns=_times(rng, start_ns, duration_s, n_syns),
        src=_repeat_row(source, n_syns),
        dst=_repeat_row(victim, n_syns),
        src_port=rng.integers(1024, 65536, n_syns),
        dst_port=port,
        outbound=False,
        ttl=int(rng.integers(45, 60)),
        index=index,
    )
    answers = _tcp_answers(
        rng, probes, synack_probability=0.5, rst_probability=0.0, index=index
    )
    filters = [
        LabelFilter(
            src_ip=address_text(source), dst_ip=address_text(victim), dst_port=port
        )
    ]
    return fr.PacketTable.concatenate([probes, answers]), filters


def ping_flood(
    rng, *, source, victim, rate_per_s, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One source sends large echo requests to one victim at a high rate.

    Most are answered. MAWILab reports it by both addresses and the protocol
    (heuristic 20, ping flood).
    """
    n_requests = max(1, int(rate_per_s * duration_s))
    table = traffic.icmp_echo_flows(
        rng,
        client=source[None, :],
        server=victim[None, :],
        start_ns=start_ns,
        n_requests=n_requests,
        interval_s=1.0 / rate_per_s,
        rtt_s=0.03,
        reply_probability=0.8,
        client_outbound=False,
        payload=1472,
        anomaly=index,
    )
    filters = [
        LabelFilter(
            src_ip=address_text(source), dst_ip=address_text(victim), proto="icmp"
        )
    ]
    return table, filters


def icmp_sweep(
    rng, *, scanner, targets, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One source sends one echo request to each of many targets; some answer.

    MAWILab reports it by the source address (taxonomy ntscICec, heuristic 20).
    """
    count = len(targets)
    table = traffic.icmp_echo_flows(
        rng,
        client=_repeat_row(scanner, count),
        server=targets,
        start_ns=_times(rng, start_ns, duration_s, count),
        n_requests=1,
        interval_s=1.0,
        rtt_s=rng.lognormal(np.log(0.06), 0.5, count),
        reply_probability=0.2,
        client_outbound=False,
        payload=0,
        anomaly=index,
    )
    return table, [LabelFilter(src_ip=address_text(scanner))]


def udp_flood(
    rng, *, sources, victim, port, packets_per_source, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """Many sources send UDP datagrams to one victim port; nothing answers.

    MAWILab reports it by the victim's address and port (taxonomy DDoSUDP).
    """
    count = len(sources)
    table = traffic.udp_exchanges(
        rng,
        client=sources,
        server=_repeat_row(victim, count),
        client_port=rng.integers(1024, 65536, count),
        server_port=port,
        start_ns=_times(rng, start_ns, duration_s * 0.7, count),
        n_packets=np.asarray(packets_per_source) * 2,
        gap_s=duration_s * 0.1 / np.maximum(1, packets_per_source),
        client_outbound=False,
        request_bytes=(400, 1400),
        response_bytes=(0, 0),
        one_way=1,
        anomaly=index,
    )
    filters = [LabelFilter(dst_ip=address_text(victim), dst_port=port, proto="udp")]
    return table, filters


def udp_network_scan(
    rng, *, scanner, targets, port, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One source, one source port, one datagram to ``port`` of each target.

    A few targets answer. MAWILab reports it by the source address, source port
    and destination port (taxonomy ntscUDPOther).
    """
    count = len(targets)
    src_port = int(rng.integers(1024, 65536))
    table = traffic.udp_exchanges(
        rng,
        client=_repeat_row(scanner, count),
        server=targets,
        client_port=src_port,
        server_port=port,
        start_ns=_times(rng, start_ns, duration_s, count),
        n_packets=np.where(rng.random(count) < 0.05, 2, 1),
        gap_s=0.05,
        client_outbound=False,
        request_bytes=(90, 130),
        response_bytes=(250, 350),
        anomaly=index,
    )
    filters = [
        LabelFilter(src_ip=address_text(scanner), src_port=src_port, dst_port=port)
    ]
    return table, filters


def alpha_flow(
    rng, *, server, client, n_data, start_ns, duration_s, index
) -> tuple[fr.PacketTable, list[LabelFilter]]:
    """One very large TCP transfer from ``server`` port 443 to one client.

    MAWILab reports alpha flows by source IP and port and destination IP
    (taxonomy alphfl).
    """
    table = traffic.tcp_sessions(
        rng,
        client=client[None, :],
        server=server[None, :],
        client_port=int(rng.integers(32768, 65536)),
        server_port=443,
        start_ns=start_ns,
        n_data=n_data,
        rtt_s=0.12,
        data_gap_s=duration_s / max(1, n_data),
        client_outbound=True,
        anomaly=index,
    )
    filters = [
        LabelFilter(
            src_ip=address_text(server), src_port=443, dst_ip=address_text(client)
        )
    ]
    return table, filters
