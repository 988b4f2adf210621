"""Flows matched to MAWILab anomalies, against labels worked out by hand."""

import numpy as np
import pytest

from stfe_jax.labels import label_flows
from stfe_jax.labels.addresses import address_row
from stfe_jax.labels.matching import match_flows
from stfe_jax.labels.mawilab import read_mawilab

T0 = 1593579600  # 2020-07-01 05:00:00 UTC, 14:00 JST
TCP, UDP, ICMP = 6, 17, 1

# (start_s, end_s) after T0, protocol, src, sport, dst, dport, packets, forward packets
FLOWS = [
    (5, 6, TCP, "10.0.0.1", 1000, "10.0.0.7", 80, 2, 1),  # f0
    (15, 16, TCP, "10.0.0.1", 1001, "10.0.0.7", 80, 2, 1),  # f1
    (15, 16, TCP, "10.0.0.1", 1002, "10.0.0.8", 443, 4, 2),  # f2
    (200, 201, TCP, "10.0.0.1", 1005, "10.0.0.7", 80, 2, 1),  # f3
    (5, 6, TCP, "10.0.0.7", 80, "10.0.0.1", 1003, 2, 1),  # f4 reply-first
    (5, 6, TCP, "10.0.0.7", 80, "10.0.0.1", 1004, 1, 1),  # f5 one-way
    (500, 501, UDP, "10.0.0.2", 5000, "10.0.0.20", 53, 2, 1),  # f6
    (500, 501, ICMP, "10.0.0.2", 0, "10.0.0.20", 53, 1, 1),  # f7
    (700, 701, ICMP, "10.0.0.3", 0, "10.0.0.30", 0, 1, 1),  # f8
    (55, 56, UDP, "10.0.0.40", 3333, "10.0.0.9", 123, 1, 1),  # f9
    (70, 71, UDP, "10.0.0.40", 3334, "10.0.0.9", 123, 1, 1),  # f10
    (55, 56, ICMP, "10.0.0.41", 0, "10.0.0.9", 123, 1, 1),  # f11
    (300, 301, TCP, "10.0.0.5", 1, "10.0.0.6", 2, 3, 2),  # f12
    (5, 6, TCP, "2001:db8::1", 4000, "2001:db8::2", 80, 2, 1),  # f13
    (40, 50.5, UDP, "10.0.0.42", 3335, "10.0.0.9", 123, 2, 2),  # f14
    (52, 58, UDP, "10.0.0.9", 123, "10.0.0.43", 3336, 2, 1),  # f15
]


def flow_meta(flows=FLOWS):
    def rows(index):
        return np.array([np.frombuffer(address_row(f[index]), np.uint8) for f in flows])

    return {
        "start_ns": np.array([int((T0 + f[0]) * 1e9) for f in flows], np.int64),
        "end_ns": np.array([int((T0 + f[1]) * 1e9) for f in flows], np.int64),
        "protocol": np.array([f[2] for f in flows], np.uint8),
        "src_addr": rows(3),
        "src_port": np.array([f[4] for f in flows], np.uint16),
        "dst_addr": rows(5),
        "dst_port": np.array([f[6] for f in flows], np.uint16),
        "packet_count": np.array([f[7] for f in flows], np.int64),
        "fwd_packet_count": np.array([f[8] for f in flows], np.int64),
        "capture_index": np.zeros(len(flows), np.int32),
    }


ADMD_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<admd:annotation xmlns:admd="http://www.nict.go.jp/admd"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.nict.go.jp/admd admd.xsd">
  <algorithm><name>MAWILab</name></algorithm>
  <analysis><description>MAWILab</description></analysis>
  <dataset><name>202007011400</name></dataset>
"""


def anomaly(label, value, filters, window=None, slice_window=None):
    def times(w):
        if w is None:
            return '<from sec="0" usec="0"/><to sec="2147483645" usec="0"/>'
        (a, ua), (b, ub) = w
        return f'<from sec="{T0 + a}" usec="{ua}"/><to sec="{T0 + b}" usec="{ub}"/>'

    inner = "".join(f"<filter {f}/>" for f in filters)
    if slice_window is not None:
        inner += times(slice_window)
    return (
        f'  <anomaly type="{label}" value="{value}">\n'
        f"    <description>digraph g {{}}</description>\n"
        f"    <slice>{inner}</slice>\n    {times(window)}\n  </anomaly>\n"
    )


# A0 scan from 10.0.0.1, [T0, T0+100]; A1 suspicious, two filters, no window;
# A2 UDP flood to 10.0.0.9:123, window [T0+50.5, T0+60] on the slice; A3 alpha
# flow 10.0.0.1 -> 10.0.0.8 (two fields set), [T0, T0+1000]; A4 suspicious scan
# from 10.0.0.1 again but a shorter window [T0+10, T0+20].
ANOMALOUS_SUSPICIOUS_XML = (
    ADMD_HEAD
    + anomaly(
        "anomalous", "0.6,0.1,10,3,ntscSYN", ['src_ip="10.0.0.1"'], ((0, 0), (100, 0))
    )
    + anomaly(
        "suspicious",
        "0.2,0.3,999,1,ptmp",
        ['src_ip="10.0.0.2" dst_port="53"', 'src_ip="10.0.0.3"'],
    )
    + anomaly(
        "anomalous",
        "0.5,0.2,999,4,DDoSUDP",
        ['dst_ip="10.0.0.9" dst_port="123"'],
        slice_window=((50, 500000), (60, 0)),
    )
    + anomaly(
        "anomalous",
        "0.7,0.1,999,4,alphfl",
        ['src_ip="10.0.0.1" dst_ip="10.0.0.8"'],
        ((0, 0), (1000, 0)),
    )
    + anomaly(
        "suspicious", "0.2,0.3,10,1,sntscSYN", ['src_ip="10.0.0.1"'], ((10, 0), (20, 0))
    )
    + "</admd:annotation>\n"
)
NOTICE_XML = (
    ADMD_HEAD
    + anomaly(
        "notice",
        "0.1,0.9,999,1,heavy_hitter",
        ['src_ip="10.0.0.5"'],
        ((0, 0), (900, 0)),
    )
    + "</admd:annotation>\n"
)
# The same anomalies as MAWILab's CSV writes them: nine fields, no time window.
ANOMALOUS_SUSPICIOUS_CSV = """\
anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, \
nbDetectors, label
0,10.0.0.1,,,,ntscSYN,0.5,3,anomalous
1,10.0.0.2,,,53,ptmp,0.1,1,suspicious
1,10.0.0.3,,,,ptmp,0.1,1,suspicious
2,,,10.0.0.9,123,DDoSUDP,0.3,4,anomalous
3,10.0.0.1,,10.0.0.8,,alphfl,0.6,4,anomalous
4,10.0.0.1,,,,sntscSYN,0.1,1,suspicious
"""

# Worked out by hand from the filters above (label code, winning anomaly, others):
# f0  10.0.0.1 at 5 s: A0 only (A4's window is 10-20 s)            -> 3, A0
# f1  at 15 s: A0 and A4, one field each; A4's window is shorter    -> 2, A4 [A0]
# f2  to 10.0.0.8 at 15 s: A3 sets two fields, beats A0 and A4      -> 3, A3 [A0, A4]
# f3  at 200 s: past A0's window, A3 wants 10.0.0.8                  -> benign
# f4  initiated by 10.0.0.7, reply packets come from 10.0.0.1       -> 3, A0
# f5  same, but one-way: no packet from 10.0.0.1                    -> benign
# f6  UDP 10.0.0.2 -> :53 : A1's first filter                        -> 2, A1
# f7  ICMP 10.0.0.2 with 53 in the port column: ports mean nothing   -> benign
# f8  ICMP from 10.0.0.3: A1's second filter sets no port            -> 2, A1
# f9  UDP -> 10.0.0.9:123 at 55 s, inside [50.5, 60]                 -> 3, A2
# f10 same at 70 s: outside                                          -> benign
# f11 ICMP -> 10.0.0.9 "port" 123                                    -> benign
# f12 from 10.0.0.5: notice N0                                       -> 1, N0
# f13 IPv6                                                           -> benign
# f14 ends at exactly 50.5 s: windows are closed intervals           -> 3, A2
# f15 10.0.0.9:123 initiates, the reply goes to 10.0.0.9:123         -> 3, A2
EXPECTED_XML = {
    0: (3, "A0", []),
    1: (2, "A4", ["A0"]),
    2: (3, "A3", ["A0", "A4"]),
    4: (3, "A0", []),
    6: (2, "A1", []),
    8: (2, "A1", []),
    9: (3, "A2", []),
    12: (1, "N0", []),
    14: (3, "A2", []),
    15: (3, "A2", []),
}
# From the CSV (no windows): A4 now matches every flow A0 matches and ties it on
# fields and (endless) window, so the more severe A0 wins; f3 matches A0 and f10
# A2 at any time; f12 has no notice file here.
EXPECTED_CSV = {
    0: (3, "A0", ["A4"]),
    1: (3, "A0", ["A4"]),
    2: (3, "A3", ["A0", "A4"]),
    3: (3, "A0", ["A4"]),
    4: (3, "A0", ["A4"]),
    6: (2, "A1", []),
    8: (2, "A1", []),
    9: (3, "A2", []),
    10: (3, "A2", []),
    14: (3, "A2", []),
    15: (3, "A2", []),
}


@pytest.fixture
def label_files(tmp_path):
    files = {
        "xml": tmp_path / "20200701_anomalous_suspicious.xml",
        "notice": tmp_path / "20200701_notice.xml",
        "csv": tmp_path / "20200701_anomalous_suspicious.csv",
    }
    files["xml"].write_text(ANOMALOUS_SUSPICIOUS_XML)
    files["notice"].write_text(NOTICE_XML)
    files["csv"].write_text(ANOMALOUS_SUSPICIOUS_CSV)
    return files


def names_of(anomalies):
    """A0.. for the anomalous/suspicious file, N0.. for the notice file."""
    return [
        ("N" if a.label == "notice" else "A") + str(a.anomaly_id) for a in anomalies
    ]


def check(match, names, expected):
    for flow in range(len(FLOWS)):
        code, winner, others = expected.get(flow, (0, None, []))
        got_winner = (
            names[match.anomaly_index[flow]] if match.anomaly_index[flow] >= 0 else None
        )
        got_others = sorted(names[a] for a in match.other_anomalies.get(flow, []))
        assert (int(match.label_code[flow]), got_winner, got_others) == (
            code,
            winner,
            others,
        ), f"flow f{flow}"


def test_xml_labels_match_hand_worked(label_files):
    anomalies = read_mawilab(label_files["xml"]) + read_mawilab(label_files["notice"])
    match = match_flows(flow_meta(), anomalies)
    check(match, names_of(anomalies), EXPECTED_XML)
    # A0 matched f0, f1, f2, f4; A3 only f2; every filter matched something.
    assert match.flows_per_anomaly.tolist() == [4, 2, 3, 1, 2, 1]
    assert match.filters_matching_nothing == 0


def test_csv_labels_mark_more_without_windows(label_files):
    anomalies = read_mawilab(label_files["csv"])
    match = match_flows(flow_meta(), anomalies)
    check(match, names_of(anomalies), EXPECTED_CSV)


def test_without_packet_counts_reply_direction_is_assumed(label_files):
    meta = flow_meta()
    del meta["packet_count"], meta["fwd_packet_count"]
    anomalies = read_mawilab(label_files["xml"])
    match = match_flows(meta, anomalies)
    # f5 (one-way, initiated by 10.0.0.7) now matches A0 through its "replies".
    assert match.label_code[5] == 3


def test_label_flows_binary_and_family(label_files):
    paths = [str(label_files[k]) for k in ("csv", "xml", "notice")]
    meta = flow_meta()

    binary = label_flows(meta, ["day.pcap"], paths, {"policy": "binary"})
    anomalous = sorted(f for f, (code, *_) in EXPECTED_XML.items() if code >= 2)
    assert binary.class_names == ["normal", "anomalous"]
    assert np.flatnonzero(binary.class_id == 1).tolist() == anomalous
    assert binary.report["mawilab_csv_superseded_by_xml"] == [paths[0]]
    assert binary.report["mawilab"]["flows_per_mawilab_label"] == {
        "benign": 6,
        "notice": 1,
        "suspicious": 3,
        "anomalous": 6,
    }
    assert binary.report["flows_per_class"] == {"normal": 7, "anomalous": 9}
    assert binary.side["mawilab_label"][12] == 1
    assert binary.side["anomaly_id"].tolist()[:3] == [0, 4, 3]
    assert binary.side["taxonomy"][2] == "alphfl"
    assert binary.side["other_anomalies"]["2"] == [[0, 0], [0, 4]]
    # The notice file is file 1 of the MAWILab files read.
    assert binary.side["anomaly_file"][12] == 1

    dropped = label_flows(meta, [], paths, {"policy": "binary", "suspicious": "drop"})
    assert np.flatnonzero(dropped.class_id == -1).tolist() == [1, 6, 8]
    apart = label_flows(meta, [], paths, {"policy": "binary", "suspicious": "separate"})
    assert apart.class_names == ["normal", "anomalous", "suspicious"]
    assert np.flatnonzero(apart.class_id == 2).tolist() == [1, 6, 8]

    family = label_flows(meta, [], paths, {"policy": "family"})
    names = [family.class_names[c] for c in family.class_id]
    # f0/f4 ntscSYN, f1 sntscSYN -> scan; f2 alphfl; f6/f8 ptmp -> other; A2 DDoSUDP.
    assert names == [
        "scan", "scan", "alpha_heavy_hitter", "normal", "scan", "normal", "other",
        "normal", "other", "dos_flood", "normal", "normal", "normal", "normal",
        "dos_flood", "dos_flood",
    ]  # fmt: skip
    assert family.class_names[0] == "normal"


def _reference_match(flows, anomalies):
    """A plain loop over flows, anomalies and filters: the rules, written out."""
    results = []
    for start, end, proto, src, sport, dst, dport, packets, forward in flows:
        start_ns, end_ns = int((T0 + start) * 1e9), int((T0 + end) * 1e9)
        found = {}
        for index, anomaly in enumerate(anomalies):
            for f in anomaly.filters:
                orientations = [(src, sport, dst, dport)]
                if packets > forward:
                    orientations.append((dst, dport, src, sport))
                for a, port_a, b, port_b in orientations:
                    if f.src_ip is not None and f.src_ip != a:
                        continue
                    if f.dst_ip is not None and f.dst_ip != b:
                        continue
                    wants_port = f.src_port is not None or f.dst_port is not None
                    if wants_port and proto not in (TCP, UDP):
                        continue
                    if f.src_port is not None and f.src_port != port_a:
                        continue
                    if f.dst_port is not None and f.dst_port != port_b:
                        continue
                    if f.proto is not None and f.proto != proto:
                        continue
                    lo = (
                        -(2**63)
                        if f.t_from_s is None
                        else int(round(f.t_from_s * 1e6)) * 1000
                    )
                    hi = (
                        2**63 - 1
                        if f.t_to_s is None
                        else int(round(f.t_to_s * 1e6)) * 1000
                    )
                    if start_ns > hi or end_ns < lo:
                        continue
                    window = (
                        2**63 - 1 if f.t_from_s is None or f.t_to_s is None else hi - lo
                    )
                    severity = {"notice": 1, "suspicious": 2, "anomalous": 3}[
                        anomaly.label
                    ]
                    key = (-f.fields_set, window, -severity, index)
                    found[index] = min(found.get(index, key), key)
        if not found:
            results.append((0, -1, []))
            continue
        winner = min(found.values())[3]
        severity = {"notice": 1, "suspicious": 2, "anomalous": 3}[
            anomalies[winner].label
        ]
        results.append((severity, winner, sorted(set(found) - {winner})))
    return results


def test_vectorised_matcher_agrees_with_plain_loops():
    from stfe_jax.labels.mawilab import Anomaly, MawilabFilter

    rng = np.random.default_rng(7)
    hosts = [f"10.0.{i // 4}.{i % 4 + 1}" for i in range(10)]
    ports = [53, 80, 123, 1000, 1001]
    flows = []
    for _ in range(400):
        start = float(rng.uniform(0, 900))
        flows.append(
            (
                start,
                start + float(rng.exponential(30)),
                int(rng.choice([ICMP, TCP, UDP])),
                str(rng.choice(hosts)),
                int(rng.choice(ports)),
                str(rng.choice(hosts)),
                int(rng.choice(ports)),
                int(rng.integers(1, 4)),
                1,
            )
        )
    anomalies = []
    for index in range(40):
        filters = []
        for _ in range(int(rng.integers(1, 4))):
            pick = rng.random(5) < 0.45
            window = rng.random() < 0.6
            t_from = T0 + float(rng.uniform(0, 800))
            filters.append(
                MawilabFilter(
                    src_ip=str(rng.choice(hosts)) if pick[0] else None,
                    src_port=int(rng.choice(ports)) if pick[1] else None,
                    dst_ip=str(rng.choice(hosts)) if pick[2] else None,
                    dst_port=int(rng.choice(ports)) if pick[3] else None,
                    proto=int(rng.choice([TCP, UDP]))
                    if pick[4] and rng.random() < 0.3
                    else None,
                    t_from_s=t_from if window else None,
                    t_to_s=t_from + float(rng.uniform(1, 200)) if window else None,
                )
            )
        label = str(rng.choice(["anomalous", "suspicious", "notice"]))
        anomalies.append(Anomaly(index, label, "ntscSYN", None, None, None, filters))

    match = match_flows(flow_meta(flows), anomalies)
    expected = _reference_match(flows, anomalies)
    got = [
        (int(code), int(winner), sorted(match.other_anomalies.get(i, [])))
        for i, (code, winner) in enumerate(
            zip(match.label_code, match.anomaly_index, strict=True)
        )
    ]
    assert got == expected
    # The random case is not degenerate: many flows match, several more than once.
    assert sum(code > 0 for code, _, _ in expected) > 100
    assert sum(len(others) > 0 for _, _, others in expected) > 20
