"""Explaining an alert: tshark's dissection of the flow's first packets via pyshark."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest

from stfe_jax.capture import open_capture
from stfe_jax.detect import alerts as alerts_lib
from stfe_jax.detect import explain
from stfe_jax.flows import cut_flows
from tests.test_detect_support import (
    START_NS,
    benign_records,
    tcp_session,
    write_capture,
)

FLOWS_CONFIG = {"packets_per_flow": 4, "bytes_per_packet": 32}


@pytest.fixture
def alert_and_capture(tmp_path):
    """A capture of benign traffic plus one session, and an alert for the session."""
    rng = np.random.default_rng(3)
    session = tcp_session(
        rng, START_NS + 5_000_000, "10.9.8.7", "10.2.0.99", 45678, 8443
    )
    path = write_capture(
        tmp_path / "mixed.pcap", benign_records(seed=4, sessions=20) + session
    )
    with open_capture(path) as capture:
        parts = list(cut_flows(capture.batches(), FLOWS_CONFIG))
    for flows in parts:
        rows = np.flatnonzero(flows.dst_port == 8443)
        if rows.size:
            scores = np.full(len(flows), 0.97, np.float32)
            classes = np.ones(len(flows), np.int64)
            (alert,) = alerts_lib.alert_records(
                flows, rows, scores, classes, ["normal", "anomalous"], str(path)
            )
            return alert, path
    raise AssertionError("the session's flow was not cut")


def test_display_filter_names_the_flow_both_ways(alert_and_capture):
    alert, _ = alert_and_capture
    text = explain.flow_display_filter(alert)
    assert "ip.addr == 10.9.8.7 && ip.addr == 10.2.0.99" in text
    assert "tcp.port == 45678 && tcp.port == 8443" in text
    assert "frame.time_epoch >=" in text


def test_explain_prints_the_dissection_and_the_masked_bytes(alert_and_capture):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    alert, _ = alert_and_capture
    out = io.StringIO()
    printed = explain.explain_alerts([alert], FLOWS_CONFIG, out=out)
    text = out.getvalue()
    assert printed == 4  # packets_per_flow packets of the 10-packet session
    assert "=== Alert 1: score 0.9700 (anomalous) tcp 10.9.8.7:45678" in text
    assert text.count("Internet Protocol Version 4, Src: ") == 4
    assert "Transmission Control Protocol, Src Port: 45678, Dst Port: 8443" in text
    assert "Transmission Control Protocol, Src Port: 8443, Dst Port: 45678" in text
    assert "Time to Live: 64" in text
    assert "Syn: 1" in text
    # Only this flow's packets: no other host appears.
    assert "10.1." not in text
    # The model's view: addresses (IP bytes 12-19) and ports (20-23) zeroed.
    dump_lines = [line for line in text.splitlines() if line.startswith("    0000  45")]
    assert len(dump_lines) == 4
    first_row = dump_lines[0].split()[1:17]
    assert first_row[8] == "40"  # TTL 64 kept
    assert first_row[12:16] == ["00", "00", "00", "00"]  # source address masked
