"""Matching flows to MAWILab anomalies, vectorised over flows and filters.

What a filter means. MAWILab's detectors and its own labelling tool work on
packets: a filter names the anomaly's source and destination (address, port) and
matches a packet whose header agrees with every field the filter sets. Our flows
are bidirectional (``src`` is the initiator), so a flow matches a filter when any
of its packets would: its initiator-to-responder packets are checked against
``(src, dst)`` as written, and its reply packets (present when ``packet_count``
exceeds ``fwd_packet_count``) against the filter with the ends swapped. So the
flow of an answered connection matches whichever side the anomaly named as its
source, while a one-way flow (common on MAWI's asymmetric link) matches only in the
direction its packets travelled.

Ports only mean something for TCP and UDP: a filter that sets a port matches no
ICMP (or other) flow, even when the flow's port columns happen to hold values.
A filter that sets ``proto`` must agree with the flow's protocol. When the filter
has a time window (only the XML gives one), the flow's ``[start, end]`` must
overlap it; an unset end is open.

Several matching anomalies: the most specific wins (most of the five traffic
fields set, then the shortest time window, an unset window counting as endless),
then the more severe label, then the anomaly read first. The others are kept.

Matching joins flows and filters on integer keys (address ids, address-pair ids
or ports) by sorting, so the work grows with flows + filters + matches, never
with flows x filters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from stfe_jax.labels.addresses import address_lookup, address_rows
from stfe_jax.labels.mawilab import Anomaly

LABEL_CODES = {"benign": 0, "notice": 1, "suspicious": 2, "anomalous": 3}
PORT_PROTOCOLS = (6, 17)  # TCP, UDP
_NS_MIN = np.iinfo(np.int64).min
_NS_MAX = np.iinfo(np.int64).max


@dataclasses.dataclass
class FilterTable:
    """All filters of a list of anomalies as columns (one row per filter).

    Ports and protocol are -1 when unset; times are ns since the epoch, with the
    int64 extremes for an unset start or end; ``window_ns`` is the int64 maximum
    for a window with an open side.
    """

    anomaly_index: np.ndarray  # int32, index into the anomalies list
    src_addr: np.ndarray  # (k, 16) uint8
    has_src: np.ndarray  # bool
    dst_addr: np.ndarray
    has_dst: np.ndarray
    src_port: np.ndarray  # int32
    dst_port: np.ndarray
    proto: np.ndarray  # int16
    t_from_ns: np.ndarray  # int64
    t_to_ns: np.ndarray
    fields_set: np.ndarray  # int8
    window_ns: np.ndarray  # int64
    severity: np.ndarray  # int8, the anomaly's label code

    def __len__(self) -> int:
        return int(self.anomaly_index.shape[0])


def _seconds_to_ns(seconds: float | None, unset: int) -> int:
    if seconds is None:
        return unset
    return int(round(seconds * 1e6)) * 1000


def filter_table(anomalies: Sequence[Anomaly]) -> FilterTable:
    """The filters of ``anomalies`` as a ``FilterTable``."""
    rows = [
        (index, anomaly, f)
        for index, anomaly in enumerate(anomalies)
        for f in anomaly.filters
    ]
    src_addr, has_src = address_rows([f.src_ip for _, _, f in rows])
    dst_addr, has_dst = address_rows([f.dst_ip for _, _, f in rows])

    def column(values, dtype):
        return np.array(list(values), dtype=dtype).reshape(len(rows))

    t_from = column((_seconds_to_ns(f.t_from_s, _NS_MIN) for _, _, f in rows), np.int64)
    t_to = column((_seconds_to_ns(f.t_to_s, _NS_MAX) for _, _, f in rows), np.int64)
    open_window = (t_from == _NS_MIN) | (t_to == _NS_MAX)
    window = np.where(open_window, _NS_MAX, t_to - np.where(open_window, 0, t_from))
    unset = -1
    return FilterTable(
        anomaly_index=column((i for i, _, _ in rows), np.int32),
        src_addr=src_addr,
        has_src=has_src,
        dst_addr=dst_addr,
        has_dst=has_dst,
        src_port=column(
            (unset if f.src_port is None else f.src_port for *_, f in rows), np.int32
        ),
        dst_port=column(
            (unset if f.dst_port is None else f.dst_port for *_, f in rows), np.int32
        ),
        proto=column(
            (unset if f.proto is None else f.proto for *_, f in rows), np.int16
        ),
        t_from_ns=t_from,
        t_to_ns=t_to,
        fields_set=column((f.fields_set for *_, f in rows), np.int8),
        window_ns=window.astype(np.int64),
        severity=column((LABEL_CODES[a.label] for _, a, _ in rows), np.int8),
    )


@dataclasses.dataclass
class MawilabMatch:
    """Per-flow result of matching flows to anomalies.

    Attributes:
      label_code: int8 per flow, 0 benign, 1 notice, 2 suspicious, 3 anomalous
        (the winning anomaly's label).
      anomaly_index: int32 per flow, the winning anomaly's index in the list
        given to ``match_flows``; -1 when nothing matched.
      other_anomalies: flow index -> indices of the other anomalies it matched.
      flows_per_anomaly: int64 per anomaly, flows it matched (winning or not).
      filters_matching_nothing: filters that matched no flow.
    """

    label_code: np.ndarray
    anomaly_index: np.ndarray
    other_anomalies: dict[int, list[int]]
    flows_per_anomaly: np.ndarray
    filters_matching_nothing: int


def _join(flow_keys: np.ndarray, filter_keys: np.ndarray) -> tuple[np.ndarray, ...]:
    """All ``(flow, filter)`` index pairs whose keys are equal (sort + search)."""
    order = np.argsort(flow_keys)
    sorted_keys = flow_keys[order]
    lo = np.searchsorted(sorted_keys, filter_keys, side="left")
    hi = np.searchsorted(sorted_keys, filter_keys, side="right")
    counts = hi - lo
    total = int(counts.sum())
    filters = np.repeat(np.arange(len(filter_keys), dtype=np.int64), counts)
    run_starts = np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.repeat(lo, counts) + (np.arange(total) - run_starts)
    return order[positions].astype(np.int64), filters


class _Flows:
    """The flow columns matching needs, with address ids."""

    def __init__(self, flow_meta: Mapping[str, np.ndarray], src_ids, dst_ids):
        self.n = len(src_ids)
        self.src = src_ids
        self.dst = dst_ids
        self.sport = np.asarray(flow_meta["src_port"]).astype(np.int32)
        self.dport = np.asarray(flow_meta["dst_port"]).astype(np.int32)
        self.proto = np.asarray(flow_meta["protocol"]).astype(np.int16)
        self.start = np.asarray(flow_meta["start_ns"]).astype(np.int64)
        self.end = np.asarray(flow_meta["end_ns"]).astype(np.int64)
        if "packet_count" in flow_meta and "fwd_packet_count" in flow_meta:
            total = np.asarray(flow_meta["packet_count"])
            forward = np.asarray(flow_meta["fwd_packet_count"])
            self.has_reply = total > forward
        else:
            logging.warning(
                "flow metadata lacks packet_count/fwd_packet_count: every flow is "
                "taken to hold reply packets, so reply-direction matches count"
            )
            self.has_reply = np.ones(self.n, dtype=bool)


def _verify(flows: _Flows, table: FilterTable, ids, pairs, reverse: bool):
    """Which candidate ``(flow, filter)`` pairs agree on every set field."""
    f, k = pairs
    src_id, dst_id = ids
    a = flows.dst[f] if reverse else flows.src[f]
    b = flows.src[f] if reverse else flows.dst[f]
    port_a = flows.dport[f] if reverse else flows.sport[f]
    port_b = flows.sport[f] if reverse else flows.dport[f]
    ok = ~table.has_src[k] | (a == src_id[k])
    ok &= ~table.has_dst[k] | (b == dst_id[k])
    wants_port = (table.src_port[k] >= 0) | (table.dst_port[k] >= 0)
    ok &= ~wants_port | np.isin(flows.proto[f], PORT_PROTOCOLS)
    ok &= (table.src_port[k] < 0) | (port_a == table.src_port[k])
    ok &= (table.dst_port[k] < 0) | (port_b == table.dst_port[k])
    ok &= (table.proto[k] < 0) | (flows.proto[f] == table.proto[k])
    ok &= (flows.start[f] <= table.t_to_ns[k]) & (flows.end[f] >= table.t_from_ns[k])
    if reverse:
        ok &= flows.has_reply[f]
    return f[ok], k[ok]


def _candidates(flows: _Flows, table: FilterTable, ids, n_addresses: int):
    """Candidate pairs per orientation, joined on the most selective key."""
    src_id, dst_id = ids
    both = table.has_src & table.has_dst
    src_only = table.has_src & ~table.has_dst
    dst_only = table.has_dst & ~table.has_src
    no_ip = ~table.has_src & ~table.has_dst
    by_dport = no_ip & (table.dst_port >= 0)
    by_sport = no_ip & (table.dst_port < 0) & (table.src_port >= 0)
    rest = no_ip & (table.dst_port < 0) & (table.src_port < 0)

    for reverse in (False, True):
        a = flows.dst if reverse else flows.src
        b = flows.src if reverse else flows.dst
        port_a = flows.dport if reverse else flows.sport
        port_b = flows.sport if reverse else flows.dport
        pair_key = np.where((a >= 0) & (b >= 0), a * n_addresses + b, -1)
        groups = (
            (both, pair_key, src_id * n_addresses + dst_id),
            (src_only, a, src_id),
            (dst_only, b, dst_id),
            (by_dport, port_b, table.dst_port),
            (by_sport, port_a, table.src_port),
        )
        for mask, flow_keys, filter_keys in groups:
            selected = np.flatnonzero(mask)
            if len(selected) == 0:
                continue
            # Flows whose key no filter can name (-1) stay out of the sort.
            candidates = np.flatnonzero(flow_keys >= 0)
            f, j = _join(
                flow_keys[candidates].astype(np.int64),
                filter_keys[selected].astype(np.int64),
            )
            yield _verify(flows, table, ids, (candidates[f], selected[j]), reverse)
        selected = np.flatnonzero(rest)
        if len(selected):
            logging.warning(
                "%d filters set no address or port: tested against all %d flows",
                len(selected),
                flows.n,
            )
            f = np.repeat(np.arange(flows.n, dtype=np.int64), len(selected))
            k = np.tile(selected, flows.n).astype(np.int64)
            yield _verify(flows, table, ids, (f, k), reverse)


def match_flows(
    flow_meta: Mapping[str, np.ndarray], anomalies: Sequence[Anomaly]
) -> MawilabMatch:
    """Match every flow against every anomaly's filters; pick one winner per flow.

    ``flow_meta`` holds the flow columns ``src_addr``/``dst_addr`` ((n, 16) uint8),
    ``src_port``, ``dst_port``, ``protocol``, ``start_ns``, ``end_ns`` (ns since
    the epoch) and, when present, ``packet_count`` and ``fwd_packet_count``.
    """
    table = filter_table(anomalies)
    # Only addresses named by a filter get an id; other flow addresses get -1.
    k = len(table)
    filter_ids, (flow_src, flow_dst) = address_lookup(
        np.concatenate([table.src_addr, table.dst_addr]),
        np.asarray(flow_meta["src_addr"]),
        np.asarray(flow_meta["dst_addr"]),
    )
    filter_src = np.where(table.has_src, filter_ids[:k], -1)
    filter_dst = np.where(table.has_dst, filter_ids[k:], -1)
    n_addresses = int(filter_ids.max()) + 1 if k else 0
    flows = _Flows(flow_meta, flow_src, flow_dst)
    ids = (filter_src, filter_dst)

    found = list(_candidates(flows, table, ids, max(n_addresses, 1)))
    flow_idx = np.concatenate([f for f, _ in found] + [np.zeros(0, np.int64)])
    filter_idx = np.concatenate([k for _, k in found] + [np.zeros(0, np.int64)])

    filter_hit = np.zeros(len(table), dtype=bool)
    filter_hit[filter_idx] = True
    label_code = np.zeros(flows.n, dtype=np.int8)
    winner = np.full(flows.n, -1, dtype=np.int32)
    flows_per_anomaly = np.zeros(len(anomalies), dtype=np.int64)
    other: dict[int, list[int]] = {}
    if len(flow_idx):
        anomaly_idx = table.anomaly_index[filter_idx].astype(np.int64)
        order = np.lexsort(
            (
                anomaly_idx,
                -table.severity[filter_idx].astype(np.int16),
                table.window_ns[filter_idx],
                -table.fields_set[filter_idx].astype(np.int16),
                flow_idx,
            )
        )
        flow_sorted = flow_idx[order]
        anomaly_sorted = anomaly_idx[order]
        first = np.r_[True, flow_sorted[1:] != flow_sorted[:-1]]
        winner[flow_sorted[first]] = anomaly_sorted[first]
        severity = np.array([LABEL_CODES[a.label] for a in anomalies], dtype=np.int8)
        label_code[flow_sorted[first]] = severity[anomaly_sorted[first]]

        n_anomalies = max(len(anomalies), 1)
        pairs = np.unique(flow_idx * n_anomalies + anomaly_idx)
        pair_flow, pair_anomaly = pairs // n_anomalies, pairs % n_anomalies
        flows_per_anomaly = np.bincount(pair_anomaly, minlength=len(anomalies))
        lost = winner[pair_flow] != pair_anomaly
        for flow, anomaly in zip(
            pair_flow[lost].tolist(), pair_anomaly[lost].tolist(), strict=True
        ):
            other.setdefault(flow, []).append(anomaly)

    logging.info(
        "MAWILab matching: %d flows, %d anomalies, %d filters; %d flows matched, "
        "%d candidate pairs kept, %d filters matched nothing",
        flows.n,
        len(anomalies),
        len(table),
        int((winner >= 0).sum()),
        len(flow_idx),
        int((~filter_hit).sum()),
    )
    return MawilabMatch(
        label_code=label_code,
        anomaly_index=winner,
        other_anomalies=other,
        flows_per_anomaly=flows_per_anomaly.astype(np.int64),
        filters_matching_nothing=int((~filter_hit).sum()),
    )
