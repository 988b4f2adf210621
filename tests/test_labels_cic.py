"""CICFlowMeter CSVs: timestamps, header quirks, and matching rows to flows."""

import collections
import datetime
import shutil
import subprocess

import numpy as np
import pytest

from stfe_jax.labels import detect_kind, label_flows
from stfe_jax.labels.addresses import address_row
from stfe_jax.labels.cic import (
    CicFormatError,
    match_cic,
    parse_timestamp,
    parse_timezone,
    read_cic_csv,
)

UTC_MINUS_3 = parse_timezone("-03:00")


def test_timestamps_day_first_in_lab_time():
    # 3 July 2017 09:08:11 at UTC-3 is 12:08:11 UTC.
    expected = datetime.datetime(2017, 7, 3, 12, 8, 11, tzinfo=datetime.UTC)
    ns, resolution = parse_timestamp("03/07/2017 09:08:11", UTC_MINUS_3)
    assert ns == int(expected.timestamp()) * 10**9
    assert resolution == 10**9
    # Without seconds the resolution is a minute; single digits are fine.
    ns, resolution = parse_timestamp("3/7/2017 9:08", UTC_MINUS_3)
    assert ns == int(expected.timestamp() - 11) * 10**9
    assert resolution == 60 * 10**9
    ns, _ = parse_timestamp("03/07/2017 01:08:11 PM", parse_timezone("UTC"))
    assert (
        ns
        == int(
            datetime.datetime(2017, 7, 3, 13, 8, 11, tzinfo=datetime.UTC).timestamp()
        )
        * 10**9
    )
    ns, _ = parse_timestamp("2017-07-03 09:08:11.250000", parse_timezone("+0530"))
    assert ns == int(expected.timestamp() - 3 * 3600 - 5.5 * 3600) * 10**9 + 250_000_000
    with pytest.raises(ValueError, match="expected a timestamp"):
        parse_timestamp("July 3rd", UTC_MINUS_3)
    with pytest.raises(ValueError, match="time zone"):
        parse_timezone("Brasilia")


T0 = 1499083700  # 2017-07-03 12:08:20 UTC = 09:08:20 at UTC-3


def local(offset_s, fmt="%d/%m/%Y %H:%M:%S"):
    moment = datetime.datetime.fromtimestamp(T0 + offset_s, tz=UTC_MINUS_3)
    return moment.strftime(fmt)


def meta(flows):
    def rows(i):
        return np.array([np.frombuffer(address_row(f[i]), np.uint8) for f in flows])

    return {
        "start_ns": np.array([int((T0 + f[0]) * 1e9) for f in flows], np.int64),
        "end_ns": np.array([int((T0 + f[1]) * 1e9) for f in flows], np.int64),
        "protocol": np.array([f[2] for f in flows], np.uint8),
        "src_addr": rows(3),
        "src_port": np.array([f[4] for f in flows], np.uint16),
        "dst_addr": rows(5),
        "dst_port": np.array([f[6] for f in flows], np.uint16),
        "capture_index": np.zeros(len(flows), np.int32),
    }


FLOWS = [
    (0.2, 3.0, 6, "192.168.10.5", 49160, "192.168.10.3", 88),  # f0
    (10.5, 11.0, 6, "192.168.10.3", 88, "192.168.10.5", 49161),  # f1 reversed
    (20.0, 90.0, 6, "192.168.10.5", 49162, "8.8.8.8", 443),  # f2 CIC split it
    (30.0, 30.5, 17, "192.168.10.5", 5353, "224.0.0.251", 5353),  # f3 no row
    (40.0, 41.0, 1, "192.168.10.5", 0, "192.168.10.1", 0),  # f4 ICMP
    (50.0, 51.0, 6, "192.168.10.5", 49163, "192.168.10.3", 88),  # f5 too late a row
]


def write_csv(path, rows, flow_id_only=False):
    # CIC's header: a leading space on most names, "Flow ID" first.
    header = (
        "Flow ID, Source IP, Source Port, Destination IP, Destination Port, "
        "Protocol, Timestamp, Flow Duration, Label"
    )
    if flow_id_only:
        header = "Flow ID, Timestamp, Flow Duration, Label"
    lines = [header]
    for src, sport, dst, dport, proto, when, label in rows:
        flow_id = f"{src}-{dst}-{sport}-{dport}-{proto}"
        if flow_id_only:
            lines.append(f"{flow_id},{when},100,{label}")
        else:
            lines.append(
                f"{flow_id},{src},{sport},{dst},{dport},{proto},{when},100,{label}"
            )
    path.write_text("\n".join(lines) + "\n")


ROWS = [
    (
        "192.168.10.5",
        49160,
        "192.168.10.3",
        88,
        6,
        local(0),
        "BENIGN",
    ),  # f0, 0.2 s later
    ("192.168.10.5", 49161, "192.168.10.3", 88, 6, local(10), "BOT"),  # f1, reversed
    ("192.168.10.5", 49162, "8.8.8.8", 443, 6, local(20), "BOT"),  # f2 first part
    ("192.168.10.5", 49162, "8.8.8.8", 443, 6, local(60), "BOT"),  # f2 after a FIN
    ("192.168.10.5", 0, "192.168.10.1", 0, 0, local(40), "BENIGN"),  # f4, protocol 0
    ("192.168.10.5", 49163, "192.168.10.3", 88, 6, local(60), "BOT"),  # f5 ends at 51
    ("10.9.9.9", 1, "10.9.9.8", 2, 6, local(5), "BENIGN"),  # no such flow
]


@pytest.mark.parametrize("flow_id_only", [False, True])
def test_rows_match_flows_by_five_tuple_either_way_and_time(tmp_path, flow_id_only):
    path = tmp_path / "flows.csv"
    write_csv(path, ROWS, flow_id_only)
    assert detect_kind(path) == "cic_csv"
    found = match_cic(meta(FLOWS), read_cic_csv(path), tolerance_s=2.0)

    # Hand-worked: f0 <- row 0, f1 <- row 1, f2 <- rows 2 and 3 (nearest its
    # start: row 2), f4 <- row 4, f3 and f5 unmatched; rows 5 and 6 match nothing.
    assert found.row_index.tolist() == [0, 1, 2, -1, 4, -1]
    assert found.names.tolist() == ["BENIGN", "BOT", "BOT", "", "BENIGN", ""]
    assert found.rows_matched.tolist() == [True, True, True, True, True, False, False]
    assert found.report["rows_matched"] == 5
    assert found.report["flows_matched"] == 4
    assert found.report["flows_matched_per_label"] == {"BENIGN": 2, "BOT": 2}


def test_rows_of_bare_commas_are_skipped(tmp_path):
    path = tmp_path / "flows.csv"
    write_csv(path, ROWS)
    with open(path, "a") as file:
        file.write(",,,,,,,,\n" * 3)
    assert len(read_cic_csv(path).label) == len(ROWS)


def test_time_zone_shifts_matching(tmp_path):
    path = tmp_path / "flows.csv"
    write_csv(path, ROWS)
    # Read as UTC the rows land three hours early and match nothing.
    found = match_cic(meta(FLOWS), read_cic_csv(path, timezone="UTC"))
    assert found.report["flows_matched"] == 0


def test_label_flows_with_cic_and_default(tmp_path):
    path = tmp_path / "flows.csv"
    write_csv(path, ROWS)
    result = label_flows(meta(FLOWS), ["x.pcap"], [str(path)], {"policy": "binary"})
    assert result.class_id.tolist() == [0, 1, 1, -1, 0, -1]
    assert result.side["cic_row"].tolist() == [0, 1, 2, -1, 4, -1]
    config = {"policy": "family", "default_class": "normal"}
    result = label_flows(meta(FLOWS), ["x.pcap"], [str(path)], config)
    assert result.class_names == ["normal", "BOT"]
    assert result.class_id.tolist() == [0, 1, 1, 0, 0, 0]


def test_bad_rows_name_file_and_line(tmp_path):
    path = tmp_path / "flows.csv"
    rows = list(ROWS)
    rows[2] = ("192.168.10.5", 49162, "8.8.8.8", 443, 6, "yesterday", "BOT")
    write_csv(path, rows)
    with pytest.raises(
        CicFormatError, match=r"flows\.csv: line 4: expected a timestamp"
    ):
        read_cic_csv(path)
    path.write_text(" Source IP, Label\n1.2.3.4,BENIGN\n")
    with pytest.raises(CicFormatError, match="line 1: expected Label and Timestamp"):
        read_cic_csv(path)


def _real_flow_meta(pcap):
    """Flow metadata of a real capture: our reader and cutter, or tshark fields."""
    try:
        from stfe_jax.capture import open_capture
        from stfe_jax.configs.default import get_flows_config
        from stfe_jax.flows import cut_flows
    except ImportError:
        return _tshark_flow_meta(pcap), "tshark"
    names = ("start_ns", "end_ns", "protocol", "src_addr", "dst_addr", "src_port",
             "dst_port", "packet_count", "fwd_packet_count",
             "capture_index")  # fmt: skip
    parts = []
    with open_capture(pcap) as capture:
        parts.extend(cut_flows(capture.batches(), get_flows_config()))
    columns = {
        name: np.concatenate([getattr(p, name) for p in parts]) for name in names
    }
    return columns, "cutter"


def _tshark_flow_meta(pcap):
    """Bidirectional 5-tuple flows (no timeout) from tshark's per-packet fields."""
    if shutil.which("tshark") is None:
        pytest.skip("neither the flow cutter nor tshark is available")
    fields = ["frame.time_epoch", "ip.src", "ip.dst", "ip.proto", "tcp.srcport",
              "tcp.dstport", "udp.srcport", "udp.dstport"]  # fmt: skip
    command = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=,"]
    for field in fields:
        command += ["-e", field]
    lines = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    flows = {}
    for line in lines.splitlines():
        t, src, dst, proto, ts, td, us, ud = line.split(",")
        if not src or "," in proto:
            continue
        sport, dport = int(ts or us or 0), int(td or ud or 0)
        key = frozenset([(src, sport), (dst, dport)]), int(proto)
        flow = flows.setdefault(
            key, [float(t), float(t), int(proto), src, sport, dst, dport]
        )
        flow[1] = float(t)
    return meta([(f[0] - T0, f[1] - T0, *f[2:]) for f in flows.values()])


def test_real_cic_slice(shared_dir):
    """The CIC-IDS2017 slice: how many of its CSV rows find our flows.

    Measured: the capture holds 196 flows of ours; the CSV's 5,020 rows (2,510
    written twice) include 196 that start inside the capture (190 BENIGN, 4 BOT
    plus 2 at its first second). 194 rows match, 84 flows (82 BENIGN, 2 BOT).
    The 4 rows in the window that match nothing start at its last seconds and
    have no packet in the capture. 112 flows of ours have no row at all (102 of
    them UDP: CICFlowMeter is known to miss UDP flows).
    """
    folder = shared_dir / "datasets" / "cicids2017-slice"
    flows, made_by = _real_flow_meta(folder / "demo.pcap")
    result = label_flows(
        flows,
        [str(folder / "demo.pcap")],
        [str(folder / "demo.csv")],
        {"policy": "binary"},
    )
    report = result.report["cic"][str(folder / "demo.csv")]

    assert report["rows"] == 5020
    assert report["duplicate_rows"] == 2510
    assert report["rows_matched"] == 194
    assert report["rows_inside_span_unmatched"] == 4
    assert report["flows_with_conflicting_rows"] == 0
    # Our cutter (idle timeout 120 s) cuts 196 flows; tshark fields grouped by
    # 5-tuple without timeouts give 189, of which 81 match (79 BENIGN, 2 BOT).
    n_flows, benign = {"cutter": (196, 82), "tshark": (189, 79)}[made_by]
    assert len(result.class_id) == n_flows
    assert report["flows_matched"] == benign + 2
    assert report["flows_matched_per_label"] == {"BENIGN": benign, "BOT": 2}
    assert collections.Counter(result.class_id.tolist()) == {
        0: benign,
        1: 2,
        -1: n_flows - benign - 2,
    }
