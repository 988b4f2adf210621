"""Tests of the synthetic MAWI-like day: capture, labels and ground truth."""

import csv
import ipaddress
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from stfe_jax.synth import mawi_day
from stfe_jax.synth.mawilab_files import CSV_HEADER, UNSET_FROM_SEC, UNSET_TO_SEC

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
SCALE = 0.2
ADMD = "{http://www.nict.go.jp/admd}"
PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1"}


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return mawi_day.generate_day(
        tmp_path_factory.mktemp("day"), date="20260101", seed=7, scale=SCALE
    )


@pytest.fixture(scope="module")
def tshark_rows(day):
    """Per packet: caplen, wirelen, header lengths and five-tuple, read by tshark."""
    if TSHARK is None:
        pytest.skip("tshark is not installed")
    fields = [
        "frame.cap_len",
        "frame.len",
        "frame.time_epoch",
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "ip.hdr_len",
        "ip.checksum.status",
        "tcp.hdr_len",
        "tcp.srcport",
        "udp.srcport",
        "tcp.dstport",
        "udp.dstport",
        "ip.proto",
        "ipv6.nxt",
        "icmp.type",
        "icmpv6.type",
    ]
    args = [TSHARK, "-r", str(day.capture_path), "-o", "ip.check_checksum:TRUE"]
    args += ["-T", "fields", "-E", "occurrence=f"]
    for field in fields:
        args += ["-e", field]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return [
        dict(zip(fields, line.split("\t"), strict=True))
        for line in result.stdout.splitlines()
    ]


def _file_bytes(day):
    return [path.read_bytes() for path in [day.capture_path, *day.label_paths]]


def test_same_seed_and_date_give_identical_files(day, tmp_path):
    again = mawi_day.generate_day(tmp_path, date="20260101", seed=7, scale=SCALE)
    assert _file_bytes(again) == _file_bytes(day)
    assert again.n_packets == day.n_packets
    assert [a.filters for a in again.anomalies] == [a.filters for a in day.anomalies]


def test_other_seed_or_date_give_another_day(day, tmp_path):
    other_seed = mawi_day.generate_day(
        tmp_path / "seed", date="20260101", seed=8, scale=SCALE
    )
    other_date = mawi_day.generate_day(
        tmp_path / "date", date="20260102", seed=7, scale=SCALE
    )
    for other in (other_seed, other_date):
        assert other.capture_path.read_bytes() != day.capture_path.read_bytes()
        scanners = {
            a.filters[0].src_ip for a in other.anomalies if a.kind == "port_scan"
        }
        assert scanners != {
            a.filters[0].src_ip for a in day.anomalies if a.kind == "port_scan"
        }
    assert other_date.start_ns - day.start_ns == 86_400 * 10**9


def test_capture_header_and_records(day):
    data = day.capture_path.read_bytes()
    header = np.frombuffer(data[:24], dtype="<u4")
    assert header[0] == 0xA1B2C3D4
    assert header[4] == 96  # snaplen
    assert header[5] == 1  # Ethernet
    offset, count, last_ts = 24, 0, 0
    while offset < len(data):
        seconds, micros, caplen, wirelen = np.frombuffer(
            data[offset : offset + 16], dtype="<u4"
        )
        ts = int(seconds) * 10**9 + int(micros) * 1000
        assert day.start_ns <= ts < day.end_ns
        assert ts >= last_ts
        assert caplen <= 96 and caplen <= wirelen
        offset += 16 + int(caplen)
        count, last_ts = count + 1, ts
    assert offset == len(data)
    assert count == day.n_packets


@needs_tshark
def test_tshark_reads_every_packet(day, tshark_rows):
    assert len(tshark_rows) == day.n_packets
    assert all(row["frame.cap_len"] for row in tshark_rows)


@needs_tshark
def test_every_packet_ends_at_its_transport_header(tshark_rows):
    versions = {4: 0, 6: 0}
    for row in tshark_rows:
        if row["ip.src"]:
            versions[4] += 1
            network = int(row["ip.hdr_len"])
            protocol = row["ip.proto"]
            assert row["ip.checksum.status"] == "1"  # good
        else:
            versions[6] += 1
            network = 40
            protocol = row["ipv6.nxt"]
        if protocol == "6":
            transport = int(row["tcp.hdr_len"])
        else:
            assert protocol in ("17", "1", "58")
            transport = 8
        assert int(row["frame.cap_len"]) == 14 + network + transport <= 96
        assert int(row["frame.len"]) >= int(row["frame.cap_len"])
    assert versions[6] > 0.02 * len(tshark_rows)
    assert versions[4] > versions[6]


def _epoch_ns(text: str) -> int:
    """tshark's frame.time_epoch ("seconds.fraction") in integer nanoseconds."""
    seconds, _, fraction = text.partition(".")
    return int(seconds) * 10**9 + int(fraction.ljust(9, "0")[:9])


def _matches(row, label_filter):
    """Does a tshark row match a MAWILab filter (in the packet's direction)."""
    src = row["ip.src"] or row["ipv6.src"]
    dst = row["ip.dst"] or row["ipv6.dst"]
    src_port = row["tcp.srcport"] or row["udp.srcport"]
    dst_port = row["tcp.dstport"] or row["udp.dstport"]
    wanted = [
        (label_filter.src_ip, src),
        (label_filter.dst_ip, dst),
        (label_filter.src_port, src_port),
        (label_filter.dst_port, dst_port),
        (PROTOCOLS.get(label_filter.proto), row["ip.proto"] or row["ipv6.nxt"]),
    ]
    return all(value is None or str(value) == seen for value, seen in wanted)


@needs_tshark
def test_each_anomaly_is_in_the_capture_inside_its_window(day, tshark_rows):
    times_ns = np.array([_epoch_ns(row["frame.time_epoch"]) for row in tshark_rows])
    for anomaly in day.anomalies:
        hits = np.array(
            [
                any(_matches(row, item) for item in anomaly.filters)
                for row in tshark_rows
            ]
        )
        assert hits.sum() > 0, anomaly.kind
        if anomaly.label == "notice":
            assert hits.sum() == anomaly.n_packets, anomaly.kind
        else:
            # Filters name the anomaly's forward direction; answers go back.
            assert hits.sum() <= anomaly.n_packets, anomaly.kind
            assert hits.sum() >= anomaly.n_packets / 3, anomaly.kind
        if anomaly.start_ns is not None:
            # The capture keeps whole microseconds of each time.
            window = times_ns[hits]
            assert window.min() >= anomaly.start_ns // 1000 * 1000, anomaly.kind
            assert window.max() <= anomaly.end_ns, anomaly.kind


def test_anomalies_cover_mawilab_main_kinds(day):
    kinds = {anomaly.kind: anomaly for anomaly in day.anomalies}
    expected = {
        "syn_network_scan": "ntscSYN",
        "port_scan": "poscaSYN",
        "syn_flood": "DDoSSYN",
        "ping_flood": "ptpDoSIC",
        "udp_flood": "DDoSUDP",
        "alpha_flow": "alphfl",
    }
    for kind, taxonomy in expected.items():
        assert kinds[kind].taxonomy == taxonomy
        assert kinds[kind].label == "anomalous"
        assert kinds[kind].n_packets > 0
    labels = [anomaly.label for anomaly in day.anomalies]
    assert labels.count("suspicious") >= 1 and labels.count("notice") >= 1
    assert kinds["syn_flood"].heuristic == 10
    assert kinds["ping_flood"].heuristic == 20
    assert sum(a.n_packets for a in day.anomalies if a.label != "notice") == (
        day.n_anomalous_packets
    )


def _check_anomalous_suspicious_row(row):
    """The nine-field shape of MAWILab's anomalous/suspicious rows."""
    assert len(row) == 9
    anomaly_id, src_ip, src_port, dst_ip, dst_port, taxonomy, distance, n, label = row
    int(anomaly_id)
    for address in (src_ip, dst_ip):
        if address:
            ipaddress.ip_address(address)
    for port in (src_port, dst_port):
        assert port == "" or 0 <= int(port) < 65536
    assert taxonomy and not taxonomy.replace("_", "").isdigit()
    float(distance)
    assert 1 <= int(n) <= 12
    assert label in ("anomalous", "suspicious")


def test_anomalous_suspicious_csv_shape(day):
    with open(day.label_paths[0], newline="") as stream:
        lines = stream.read().splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.reader(lines[1:]))
    for row in rows:
        _check_anomalous_suspicious_row(row)
    reported = [a for a in day.anomalies if a.label != "notice"]
    assert len(rows) == sum(len(a.filters) for a in reported)
    ids = [int(row[0]) for row in rows]
    assert sorted(set(ids)) == list(range(len(reported)))
    labels = [row[8] for row in rows]
    assert labels == sorted(labels)  # anomalous rows first, as MAWILab writes them
    scan = next(a for a in reported if a.kind == "syn_network_scan")
    scan_rows = [row for row in rows if int(row[0]) == scan.anomaly_id]
    assert [row[4] for row in scan_rows] == ["23", "2323"]
    assert all(row[2] == row[3] == "" for row in scan_rows)


def test_real_mawilab_csvs_have_the_shape_we_write(shared_dir):
    for path in sorted((shared_dir / "datasets" / "mawi").glob("*_suspicious.csv")):
        lines = path.read_text().splitlines()
        assert lines[0] == CSV_HEADER
        for row in csv.reader(lines[1:]):
            _check_anomalous_suspicious_row(row)


def test_notice_csv_shape(day):
    with open(day.label_paths[2], newline="") as stream:
        lines = stream.read().splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.reader(lines[1:]))
    notice = [a for a in day.anomalies if a.label == "notice"]
    assert len(rows) == sum(len(a.filters) for a in notice)
    for row, anomaly in zip(rows, notice, strict=True):
        assert len(row) == 9
        assert row[4] == anomaly.taxonomy
        assert int(row[5]) == anomaly.heuristic
        assert float(row[6]) < 0
        assert row[8] == "notice"
    busiest_server = notice[0].filters[0].src_ip
    assert busiest_server and rows[0][0:2] == [busiest_server, "80"]


def _xml_anomalies(path):
    root = ET.parse(path).getroot()
    assert root.tag == f"{ADMD}annotation"
    assert root.find("dataset/name").text.endswith(".pcap")
    return root.findall("anomaly")


def test_admd_xml_matches_csv_and_ground_truth(day):
    for xml_path, label_set in (
        (day.label_paths[1], {"anomalous", "suspicious"}),
        (day.label_paths[3], {"notice"}),
    ):
        expected = [a for a in day.anomalies if a.label in label_set]
        elements = _xml_anomalies(xml_path)
        assert len(elements) == len(expected)
        for element, anomaly in zip(elements, expected, strict=True):
            assert element.get("type") == anomaly.label
            value = element.get("value").split(",")
            assert len(value) == 5
            distance_normal, distance_anomalous = float(value[0]), float(value[1])
            assert int(value[2]) == anomaly.heuristic
            flags = value[3].split(" ")
            assert len(flags) == 12 and set(flags) <= {"0", "1"}
            assert flags.count("1") == anomaly.n_detectors
            assert value[4] == anomaly.taxonomy
            assert (distance_normal > distance_anomalous) == (
                anomaly.label == "anomalous"
            )
            filters = element.findall("slice/filter")
            assert len(filters) == len(anomaly.filters)
            for found, wanted in zip(filters, anomaly.filters, strict=True):
                for name in ("src_ip", "src_port", "dst_ip", "dst_port", "proto"):
                    value = getattr(wanted, name)
                    assert found.get(name) == (None if value is None else str(value))
            start = element.find("from")
            end = element.find("to")
            start_us = int(start.get("sec")) * 10**6 + int(start.get("usec"))
            end_us = int(end.get("sec")) * 10**6 + int(end.get("usec"))
            if anomaly.start_ns is None:
                assert int(start.get("sec")) == UNSET_FROM_SEC
                assert int(end.get("sec")) == UNSET_TO_SEC
            else:
                # Whole microseconds around the packets: floor, then ceiling.
                assert start_us == anomaly.start_ns // 1000
                assert end_us == -(-anomaly.end_ns // 1000)
                assert day.start_ns // 1000 <= start_us < end_us
                assert end_us <= day.end_ns // 1000


def test_full_scale_day_size(tmp_path):
    full = mawi_day.generate_day(tmp_path, date="20260301", seed=1)
    assert 100_000 <= full.n_packets <= 200_000
    assert 10_000 <= full.n_flows <= 20_000
    assert 0.1 < full.n_anomalous_packets / full.n_packets < 0.4
    assert (full.end_ns - full.start_ns) == 900 * 10**9


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="YYYYMMDD"):
        mawi_day.generate_day(tmp_path, date="2026-01-01")
    with pytest.raises(ValueError, match="scale"):
        mawi_day.generate_day(tmp_path, scale=0)
