"""A generated, synthetic MAWI-like day: a capture and its MAWILab-format labels.

``generate_day`` writes a SYNTHETIC capture in the form of a MAWI samplepoint-F trace
(Ethernet, snaplen 96, every packet cut at the end of its transport header, wire
lengths kept, scrambled-looking addresses, IPv4 and some IPv6, flows seen in one
direction only, a few packets missed, 15 minutes from 14:00 JST) holding background
traffic of many hosts and services and injected anomalies of MAWILab's main kinds,
and writes the day's labels in MAWILab's own CSV and admd XML formats. Nothing in
it is real traffic; it exists so that the whole pipeline can run, and be tested,
without downloading a MAWI day. Results on it are a pipeline check, never evidence
about real traffic.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import time

import numpy as np
from absl import logging

from stfe_jax.synth import anomalies as an
from stfe_jax.synth import frames as fr
from stfe_jax.synth import mawilab_files as mf
from stfe_jax.synth import traffic, writers
from stfe_jax.synth.traffic import SECOND_NS

SNAPLEN = 96
DURATION_S = 900.0
# Share of packets the capture misses, as MAWI traces miss some (TCP gaps follow).
CAPTURE_LOSS = 0.001
# MAWI samplepoint-F daily traces start at 14:00 JST, 05:00 UTC.
TRACE_START_UTC = datetime.time(5, 0)

# MAWILab heuristic codes (MAWILab documentation): below 500 suspicious ports or
# flags (10 SYN attack, 20 ping flood), 500-900 well-known ports (503 HTTP, 504
# HTTPS traffic), above 900 unknown ports. The documentation names no code for
# "other well-known port" or "unknown port"; 500 and 901 stand for them here.
HEURISTIC_SYN = 10
HEURISTIC_PING_FLOOD = 20
HEURISTIC_WELL_KNOWN = 500
HEURISTIC_HTTP = 503
HEURISTIC_HTTPS = 504
HEURISTIC_UNKNOWN_PORT = 901


@dataclasses.dataclass
class SyntheticDay:
    """What ``generate_day`` wrote, and the ground truth of what it injected.

    Attributes:
      date: the day, "YYYYMMDD".
      seed, scale: the generator's arguments.
      capture_path: the pcap file (Ethernet, snaplen 96).
      label_paths: the MAWILab-format files: anomalous/suspicious CSV and XML,
        then notice CSV and XML.
      anomalies: every labelled anomaly (anomalous and suspicious ones injected,
        notice ones chosen among ordinary hosts), with kind, taxonomy, filters,
        time window and packet count.
      start_ns, end_ns: the capture's time span, ns since the Unix epoch.
      n_packets: packets in the capture.
      n_flows: distinct bidirectional five-tuples (ICMP by address pair).
      n_anomalous_packets: packets injected by anomalous or suspicious anomalies.
    """

    date: str
    seed: int
    scale: float
    capture_path: pathlib.Path
    label_paths: list[pathlib.Path]
    anomalies: list[mf.LabelledAnomaly]
    start_ns: int
    end_ns: int
    n_packets: int
    n_flows: int
    n_anomalous_packets: int


def _day_start_ns(date: str) -> int:
    """05:00 UTC of ``date`` ("YYYYMMDD") in ns since the Unix epoch."""
    try:
        day = datetime.datetime.strptime(date, "%Y%m%d").date()
    except ValueError as error:
        raise ValueError(f"date {date!r}: expected YYYYMMDD") from error
    start = datetime.datetime.combine(day, TRACE_START_UTC, tzinfo=datetime.UTC)
    return int(start.timestamp()) * SECOND_NS


def _scores(rng: np.random.Generator, label: str) -> dict:
    """Distances and reporting detector configurations typical of a label."""
    reporting = {"anomalous": (3, 10), "suspicious": (1, 4), "notice": (1, 3)}[label]
    n_reporting = int(rng.integers(*reporting))
    detectors = np.zeros(12, dtype=bool)
    detectors[rng.choice(12, n_reporting, replace=False)] = True
    distance_normal = float(rng.uniform(0.3, 0.8))
    gap = {"anomalous": -1, "suspicious": 1, "notice": 1}[label] * rng.uniform(
        0.01, 0.35
    )
    if label == "notice":
        gap += 0.3
    return dict(
        distance_normal=distance_normal,
        distance_anomalous=distance_normal + float(gap),
        detectors=tuple(bool(flag) for flag in detectors),
    )


def _window(rng: np.random.Generator, start_ns: int, duration_s: float) -> int:
    """A random start for an anomaly lasting ``duration_s`` inside the trace."""
    offset = rng.uniform(20.0, DURATION_S - duration_s - 20.0)
    return start_ns + int(offset * SECOND_NS)


def _inject(
    rng: np.random.Generator,
    hosts: traffic.HostPool,
    background: traffic.Background,
    start_ns: int,
    scale: float,
) -> tuple[list[fr.PacketTable], list[dict]]:
    """Build the injected anomalies: their packets and their label descriptions."""

    def scaled(count: int, least: int = 10) -> int:
        return max(least, round(count * scale))

    outside = background.reserved_outside_v4
    inside = background.reserved_inside_v4
    spoofed = traffic.v4_addresses(traffic.public_v4(rng, scaled(600) + scaled(300)))
    tables, described = [], []

    def add(label, kind, taxonomy, heuristic, built):
        table, filters = built
        tables.append(table)
        described.append(
            dict(
                label=label,
                kind=kind,
                taxonomy=taxonomy,
                heuristic=heuristic,
                filters=filters,
                **_scores(rng, label),
            )
        )

    def index() -> int:
        return len(described)

    add(
        "anomalous",
        "syn_network_scan",
        "ntscSYN",
        HEURISTIC_SYN,
        an.syn_network_scan(
            rng,
            scanner=outside[0],
            targets=hosts.inside_random_v4(rng, scaled(1500)),
            ports=[23, 2323],
            start_ns=_window(rng, start_ns, 120),
            duration_s=120,
            index=index(),
        ),
    )
    port_count = min(1024, scaled(1000))
    add(
        "anomalous",
        "port_scan",
        "poscaSYN",
        HEURISTIC_SYN,
        an.port_scan(
            rng,
            scanner=outside[1],
            target=inside[0],
            ports=rng.permutation(np.arange(1, 1025))[:port_count],
            open_ports=[22, 80, 443],
            start_ns=_window(rng, start_ns, 60),
            duration_s=60,
            index=index(),
        ),
    )
    n_flood_sources = scaled(600)
    add(
        "anomalous",
        "syn_flood",
        "DDoSSYN",
        HEURISTIC_SYN,
        an.syn_flood(
            rng,
            sources=spoofed[:n_flood_sources],
            victim=inside[1],
            port=80,
            syns_per_source=rng.integers(1, 8, n_flood_sources),
            start_ns=_window(rng, start_ns, 90),
            duration_s=90,
            index=index(),
        ),
    )
    # TODO: "ptpDoSIC" follows the pattern of ptpDoSSYN for MAWILab's
    # point_to_point_denial_of_service_ICMP class; the real files here show no
    # example of the short code.
    add(
        "anomalous",
        "ping_flood",
        "ptpDoSIC",
        HEURISTIC_PING_FLOOD,
        an.ping_flood(
            rng,
            source=outside[2],
            victim=inside[2],
            rate_per_s=max(1, 80 * scale),
            start_ns=_window(rng, start_ns, 40),
            duration_s=40,
            index=index(),
        ),
    )
    add(
        "anomalous",
        "icmp_sweep",
        "ntscICec",
        HEURISTIC_PING_FLOOD,
        an.icmp_sweep(
            rng,
            scanner=outside[3],
            targets=hosts.inside_random_v4(rng, scaled(1200)),
            start_ns=_window(rng, start_ns, 100),
            duration_s=100,
            index=index(),
        ),
    )
    n_udp_sources = scaled(300)
    add(
        "anomalous",
        "udp_flood",
        "DDoSUDP",
        HEURISTIC_UNKNOWN_PORT,
        an.udp_flood(
            rng,
            sources=spoofed[n_flood_sources : n_flood_sources + n_udp_sources],
            victim=inside[3],
            port=27015,
            packets_per_source=rng.integers(1, 15, n_udp_sources),
            start_ns=_window(rng, start_ns, 60),
            duration_s=60,
            index=index(),
        ),
    )
    add(
        "anomalous",
        "alpha_flow",
        "alphfl",
        HEURISTIC_HTTPS,
        an.alpha_flow(
            rng,
            server=outside[4],
            client=inside[4],
            n_data=scaled(9000, 100),
            start_ns=_window(rng, start_ns, 200),
            duration_s=180,
            index=index(),
        ),
    )
    add(
        "suspicious",
        "point_to_point_syn_flood",
        "ptpDoSSYN",
        HEURISTIC_SYN,
        an.point_to_point_syn_flood(
            rng,
            source=outside[5],
            victim=inside[5],
            port=443,
            n_syns=scaled(1200),
            start_ns=_window(rng, start_ns, 30),
            duration_s=30,
            index=index(),
        ),
    )
    add(
        "suspicious",
        "udp_network_scan",
        "ntscUDPOther",
        HEURISTIC_WELL_KNOWN,
        an.udp_network_scan(
            rng,
            scanner=outside[6],
            targets=hosts.inside_random_v4(rng, scaled(600)),
            port=1900,
            start_ns=_window(rng, start_ns, 60),
            duration_s=60,
            index=index(),
        ),
    )
    return tables, described


def _matches(table: fr.PacketTable, item: mf.LabelFilter) -> np.ndarray:
    """Packets whose header fields agree with every field the filter sets."""
    match = np.ones(len(table), dtype=bool)
    for name, column in (("src_ip", table.src_addr), ("dst_ip", table.dst_addr)):
        value = getattr(item, name)
        if value is not None:
            address = traffic.address_bytes(value)
            match &= np.all(column == address, axis=1)
    for name, column in (("src_port", table.src_port), ("dst_port", table.dst_port)):
        value = getattr(item, name)
        if value is not None:
            match &= column == value
    if item.proto is not None:
        match &= table.protocol == {"tcp": 6, "udp": 17, "icmp": 1}[item.proto]
    return match


def _notice(rng: np.random.Generator, background: traffic.Background) -> list[dict]:
    """Ordinary heavy hitters that a detector reports but MAWILab judges normal."""
    server = traffic.address_text(background.busiest_web_server)
    resolver = traffic.address_text(background.busiest_resolver)
    return [
        dict(
            label="notice",
            kind="busy_web_server",
            taxonomy="ptmpHTTP",
            heuristic=HEURISTIC_HTTP,
            filters=[mf.LabelFilter(src_ip=server, src_port=80)],
            **_scores(rng, "notice"),
        ),
        dict(
            label="notice",
            kind="busy_resolver",
            taxonomy="mptp",
            heuristic=HEURISTIC_WELL_KNOWN,
            filters=[mf.LabelFilter(dst_ip=resolver, dst_port=53)],
            whole_day=True,
            **_scores(rng, "notice"),
        ),
    ]


def count_flows(table: fr.PacketTable) -> int:
    """Distinct bidirectional five-tuples of the table (ICMP keyed by addresses)."""
    src = table.src_addr.view(">u8").reshape(-1, 2)
    dst = table.dst_addr.view(">u8").reshape(-1, 2)
    src_port = table.src_port.astype(np.uint64)
    dst_port = table.dst_port.astype(np.uint64)
    src_first = (src[:, 0] < dst[:, 0]) | (
        (src[:, 0] == dst[:, 0])
        & (
            (src[:, 1] < dst[:, 1])
            | ((src[:, 1] == dst[:, 1]) & (src_port <= dst_port))
        )
    )
    first = np.where(src_first[:, None], src, dst)
    second = np.where(src_first[:, None], dst, src)
    keys = np.column_stack(
        [
            table.protocol.astype(np.uint64),
            first,
            np.where(src_first, src_port, dst_port),
            second,
            np.where(src_first, dst_port, src_port),
        ]
    )
    if not len(keys):
        return 0
    keys = keys[np.lexsort(keys.T[::-1])]
    return int(1 + np.any(keys[1:] != keys[:-1], axis=1).sum())


def generate_day(
    out_dir, *, date: str = "20260101", seed: int = 0, scale: float = 1.0
) -> SyntheticDay:
    """Generate a SYNTHETIC MAWI-like day into ``out_dir``.

    Writes ``<date>.pcap`` and MAWILab-format labels ``<date>_anomalous_suspicious``
    and ``<date>_notice`` (``.csv`` and ``.xml``). The same ``seed`` and ``date``
    give the same files; another seed or date gives another day (other hosts,
    other times, other anomaly hosts), so a model can be trained on one generated
    day and tested on another.

    Args:
      out_dir: folder to write into (created if missing).
      date: the day, "YYYYMMDD"; the trace covers 05:00-05:15 UTC of it.
      seed: random seed.
      scale: multiplies the number of flows; 1.0 gives about 130 k packets and
        17 k flows over 15 minutes, in about 3 s on one core.

    Returns:
      The paths written and the ground truth of what the day holds.
    """
    if scale <= 0:
        raise ValueError(f"scale {scale}: must be positive")
    began = time.perf_counter()
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start_ns = _day_start_ns(date)
    end_ns = start_ns + int(DURATION_S * SECOND_NS)
    rng = np.random.default_rng([seed, int(date)])

    hosts = traffic.make_host_pool(rng)
    background = traffic.background(
        rng, hosts, start_ns=start_ns, duration_s=DURATION_S, scale=scale
    )
    injected_tables, injected = _inject(rng, hosts, background, start_ns, scale)
    table = fr.PacketTable.concatenate([background.table, *injected_tables])
    inside_trace = (table.ts_ns >= start_ns) & (table.ts_ns < end_ns)
    captured = rng.random(len(table)) >= CAPTURE_LOSS
    table = table.take(inside_trace & captured)
    table = table.take(np.argsort(table.ts_ns, kind="stable"))

    described = injected + _notice(rng, background)
    labelled, notice_id = [], 0
    for position, item in enumerate(described):
        whole_day = item.pop("whole_day", False)
        if item["label"] == "notice":
            member = np.zeros(len(table), dtype=bool)
            for label_filter in item["filters"]:
                member |= _matches(table, label_filter)
            anomaly_id, notice_id = notice_id, notice_id + 1
        else:
            member = table.anomaly == position
            anomaly_id = position
        times = table.ts_ns[member]
        labelled.append(
            mf.LabelledAnomaly(
                anomaly_id=anomaly_id,
                start_ns=None if whole_day or not len(times) else int(times.min()),
                end_ns=None if whole_day or not len(times) else int(times.max()),
                n_packets=int(member.sum()),
                **item,
            )
        )

    frames, caplen, wirelen = fr.build_frames(table, rng, width=SNAPLEN)
    capture_path = out_dir / f"{date}.pcap"
    writers.write_pcap_frames(
        capture_path, table.ts_ns, frames, caplen, wirelen, snaplen=SNAPLEN
    )

    reported = [item for item in labelled if item.label != "notice"]
    notice = [item for item in labelled if item.label == "notice"]
    stem = out_dir / date
    label_paths = [
        stem.with_name(f"{date}_anomalous_suspicious.csv"),
        stem.with_name(f"{date}_anomalous_suspicious.xml"),
        stem.with_name(f"{date}_notice.csv"),
        stem.with_name(f"{date}_notice.xml"),
    ]
    description = (
        "SYNTHETIC labels of a generated MAWI-like day (stfe_jax.synth); "
        "not MAWILab output"
    )
    mf.write_anomalous_suspicious_csv(label_paths[0], reported)
    mf.write_admd_xml(
        label_paths[1],
        reported,
        dataset_name=capture_path.name,
        description=description,
    )
    mf.write_notice_csv(label_paths[2], notice)
    mf.write_admd_xml(
        label_paths[3], notice, dataset_name=capture_path.name, description=description
    )

    day = SyntheticDay(
        date=date,
        seed=seed,
        scale=scale,
        capture_path=capture_path,
        label_paths=label_paths,
        anomalies=labelled,
        start_ns=start_ns,
        end_ns=end_ns,
        n_packets=len(table),
        n_flows=count_flows(table),
        n_anomalous_packets=int((table.anomaly >= 0).sum()),
    )
    elapsed = time.perf_counter() - began
    logging.info(
        "Generated a SYNTHETIC MAWI-like day %s (seed %d, scale %g) in %s: "
        "%d packets, %d flows, %d anomalies (%d anomalous/suspicious packets) "
        "in %.2f s (%.0f packets/s)",
        date,
        seed,
        scale,
        out_dir,
        day.n_packets,
        day.n_flows,
        len(labelled),
        day.n_anomalous_packets,
        elapsed,
        day.n_packets / max(elapsed, 1e-9),
    )
    return day
