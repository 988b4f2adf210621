"""Alert records, the alert decision, the summary table, and live flow assembly."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from stfe_jax.capture import open_capture
from stfe_jax.detect import alerts as alerts_lib
from stfe_jax.detect import live
from stfe_jax.detect.live_flows import LiveFlowTable
from tests.test_detect_support import START_NS, tcp_session, write_capture


def test_iso_time_keeps_nanoseconds_in_utc():
    assert alerts_lib.iso_time(0) == "1970-01-01T00:00:00.000000000Z"
    assert (
        alerts_lib.iso_time(1_767_243_600_123_456_789)
        == "2026-01-01T05:00:00.123456789Z"
    )


def test_addresses_are_written_as_text():
    v4 = np.zeros(16, np.uint8)
    v4[10:12] = 0xFF
    v4[12:] = [192, 0, 2, 7]
    assert alerts_lib.address_text(v4, 4) == "192.0.2.7"
    v6 = np.zeros(16, np.uint8)
    v6[:2] = [0x20, 0x01]
    v6[2:4] = [0x0D, 0xB8]
    v6[15] = 1
    assert alerts_lib.address_text(v6, 6) == "2001:db8::1"


def test_alert_decision_with_and_without_threshold():
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]], np.float32)
    scores = 1.0 - probabilities[:, 0]
    assert alerts_lib.is_alert(probabilities, scores, 0, 0.4).tolist() == [
        False,
        True,
        True,
    ]
    assert alerts_lib.is_alert(probabilities, scores, 0, None).tolist() == [
        False,
        True,
        False,
    ]
    # The predicted class of an alert is its most probable non-benign class.
    three = np.array([[0.5, 0.2, 0.3], [0.1, 0.6, 0.3]], np.float32)
    assert alerts_lib.predicted_attack_class(three, 0).tolist() == [2, 1]


def test_summary_table_counts_per_capture_and_class():
    summary = alerts_lib.DetectSummary()
    summary.add("a.pcap", 100, ["scan", "scan", "flood"])
    summary.add("b.pcap", 50, [])
    summary.capture("a.pcap").packets = 1000
    summary.capture("b.pcap").error = "could not be read to its end: offset 99"
    table = summary.format_table()
    assert summary.flows == 150 and summary.alerts == 3
    assert "a.pcap" in table and "3.00%" in table and "2.00%" in table
    assert "scan" in table and "flood" in table
    assert "NOTE b.pcap: could not be read to its end: offset 99" in table
    assert json.loads(json.dumps(summary.to_dict()))["alerts_by_class"] == {
        "scan": 2,
        "flood": 1,
    }


def test_alert_writer_writes_one_json_line_per_alert():
    stream = io.StringIO()
    writer = alerts_lib.AlertWriter(stream)
    writer.write([{"a": 1}, {"a": 2}])
    assert stream.getvalue().splitlines() == ['{"a": 1}', '{"a": 2}']
    assert writer.written == 2


def test_dumpcap_drop_statistics_are_parsed():
    text = (
        "Packets captured: 1200\n"
        "Packets received/dropped on interface 'Loopback: lo': 1250/30 "
        "(pcap:30/dumpcap:15/flushed:5/ps_ifdrop:0) (96.0%)\n"
    )
    stats = live.parse_engine_stats(text)
    assert stats.received == 1250
    assert stats.dropped == 50
    assert live.parse_engine_stats("no statistics").dropped is None


def test_capture_command_pipes_pcapng_with_the_filter():
    command = live.capture_command("/usr/bin/dumpcap", "lo", "tcp port 80")
    assert command == [
        "/usr/bin/dumpcap",
        "-i",
        "lo",
        "-w",
        "-",
        "-q",
        "-n",
        "-f",
        "tcp port 80",
    ]
    tshark = live.capture_command("/usr/bin/tshark", "eth0", None)
    assert tshark[-2:] == ["-F", "pcapng"]


@pytest.fixture
def session_batch(tmp_path):
    """One TCP session of 10 packets (closed by FINs), as one PacketBatch."""
    rng = np.random.default_rng(0)
    records = tcp_session(rng, START_NS, "10.1.0.1", "10.2.0.1", 40000, 80)
    path = write_capture(tmp_path / "session.pcap", records)
    with open_capture(path) as capture:
        (batch,) = list(capture.batches())
    return batch


def test_live_table_hands_out_a_flow_once_its_sample_fills(session_batch):
    flows_config = {"packets_per_flow": 4, "bytes_per_packet": 32}
    table = LiveFlowTable(flows_config)
    first_four = _take(session_batch, slice(0, 4))
    assert table.push(_take(session_batch, slice(0, 3))) is None
    assert table.take_full_samples() is None  # 3 packets: not full yet
    ended = table.push(_take(session_batch, slice(3, 4)))
    assert ended is None
    full = table.take_full_samples()
    assert len(full) == 1 and int(full.n_packets[0]) == 4
    assert int(full.packet_count[0]) == len(first_four)
    assert table.take_full_samples() is None  # handed out once

    # The rest of the session ends the flow (FINs); it was already scored.
    ended = table.push(_take(session_batch, slice(4, None)))
    ended = table.finish() if ended is None else ended
    assert len(ended) == 1 and int(ended.packet_count[0]) == 10
    assert table.drop_already_scored(ended) is None


def test_live_table_expires_idle_flows_by_the_wall_clock(session_batch):
    table = LiveFlowTable({"packets_per_flow": 16, "idle_timeout_s": 5.0})
    table.push(_take(session_batch, slice(0, 3)))  # handshake, no FIN
    last_ns = int(session_batch.ts_ns[2])
    assert table.expire(last_ns + 4_000_000_000) is None
    expired = table.expire(last_ns + 6_000_000_000)
    assert len(expired) == 1 and int(expired.packet_count[0]) == 3
    assert table.stats.flows_by_end_reason["idle_timeout"] == 1


def _take(batch, rows: slice):
    """A PacketBatch of some of ``batch``'s packets (bytes shared)."""
    from stfe_jax.capture.columns import PacketBatch

    columns = {
        name: getattr(batch, name)[rows]
        for name in PacketBatch.__dataclass_fields__
        if name != "data"
    }
    return PacketBatch(**columns, data=batch.data)
