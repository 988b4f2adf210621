"""Live detection on the loopback interface: dumpcap -> pipe -> flows -> scores.

Needs capture rights (root, or dumpcap with capture capabilities) and dumpcap;
without them the test skips and says which is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.test_detect_support import trained_model  # noqa: F401 - fixture

PORT_LOW, PORT_HIGH = 47310, 47390
SERVER_PORT = PORT_LOW
CLOSED_PORTS = range(PORT_LOW + 10, PORT_LOW + 40)
CLIENT_SESSIONS = 5


def _capture_rights_missing() -> str | None:
    if shutil.which("dumpcap") is None:
        return "dumpcap is not installed (apt-get install tshark)"
    if os.geteuid() != 0:
        return "not root: no rights to capture on the loopback interface"
    return None


def _serve(listener: socket.socket, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        with connection:
            data = connection.recv(1024)
            connection.sendall(b"echo:" + data)


def _generate_traffic() -> None:
    """Sessions with a small TCP server, then a burst of connects to closed ports."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", SERVER_PORT))
    listener.listen()
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(listener, stop))
    server.start()
    try:
        for i in range(CLIENT_SESSIONS):
            with socket.create_connection(("127.0.0.1", SERVER_PORT), timeout=5) as c:
                c.sendall(f"hello {i}".encode())
                assert c.recv(1024).startswith(b"echo:")
        for port in CLOSED_PORTS:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)
    finally:
        stop.set()
        server.join(timeout=5)
        listener.close()


@pytest.mark.timeout(900)
def test_live_loopback_flows_are_seen_and_scored(trained_model, tmp_path):  # noqa: F811
    reason = _capture_rights_missing()
    if reason:
        pytest.skip(reason)
    out_dir = tmp_path / "live"
    command = [
        sys.executable,
        "run.py",
        "--mode=detect",
        f"--checkpoint={trained_model}",
        "--interface=lo",
        f"--capture_filter=tcp portrange {PORT_LOW}-{PORT_HIGH}",
        "--threshold=0",  # every scored flow is written, so each can be checked
        f"--workdir={out_dir}",
    ]
    log_path = tmp_path / "detect.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 300
            while "Capturing on" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "capture did not start"
                time.sleep(0.5)
            _generate_traffic()
            # The closed-port flows (SYN, RST) are scored and written while the
            # capture runs, before any Ctrl-C.
            alerts_path = out_dir / "alerts.jsonl"
            deadline = time.monotonic() + 120
            while True:
                live_lines = alerts_path.read_text().splitlines()
                refused_live = [
                    line
                    for line in live_lines
                    if json.loads(line)["dst_port"] in CLOSED_PORTS
                ]
                if len(refused_live) == len(CLOSED_PORTS):
                    break
                assert time.monotonic() < deadline, live_lines
                time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]

    alerts = [json.loads(line) for line in alerts_path.read_text().splitlines()]
    closed = {a["dst_port"] for a in alerts if a["dst_port"] in CLOSED_PORTS}
    assert closed == set(CLOSED_PORTS)
    sessions = [a for a in alerts if a["dst_port"] == SERVER_PORT]
    assert len(sessions) == CLIENT_SESSIONS
    for alert in alerts:
        assert alert["capture"] == "live:lo"
        assert alert["src_addr"] == "127.0.0.1" and alert["dst_addr"] == "127.0.0.1"
        assert 0.0 <= alert["anomaly_score"] <= 1.0
        assert alert["scored_at"] in (
            "flow_end",
            "sample_full",
            "timeout",
            "capture_stopped",
        )
    # A refused connect is SYN then RST: two packets, ended by the RST while running.
    refused = [a for a in alerts if a["dst_port"] in CLOSED_PORTS]
    assert all(a["packets"] == 2 for a in refused)
    assert all(a["scored_at"] == "flow_end" for a in refused)

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["flows_scored"] == len(alerts)
    assert summary["packets_dropped"] == 0
    assert summary["packets"] >= CLIENT_SESSIONS * 8 + 2 * len(CLOSED_PORTS)
    assert "flows scored" in output


def _untrained_detector():
    """A tiny MLP with freshly initialised parameters (the engine's refusal comes
    before any flow is scored)."""
    import jax

    from stfe_jax import configs
    from stfe_jax.detect import checkpoint
    from stfe_jax.models import build_model

    config = configs.get_config("mlp", tiny=True)
    model = build_model(config.model)
    example = checkpoint.example_batch(config.flows)
    params = model.init(jax.random.key(0), example)["params"]
    return checkpoint.Detector(
        checkpoint_dir=REPO_ROOT,
        config=config,
        flows_config=config.flows.to_dict(),
        class_names=["normal", "anomalous"],
        normal_class=0,
        threshold=0.5,
        threshold_source="test",
        model=model,
        params=params,
        synthetic=False,
    )


@pytest.mark.timeout(300)
def test_capture_engine_failure_is_reported_with_its_message():
    reason = _capture_rights_missing()
    if reason:
        pytest.skip(reason)
    import io

    from stfe_jax.detect import live
    from stfe_jax.detect.alerts import AlertWriter
    from stfe_jax.detect.sink import AlertSink

    sink = AlertSink(_untrained_detector(), AlertWriter(io.StringIO()), min_batch=8)
    with pytest.raises(RuntimeError) as error:
        live.detect_live(sink, "no-such-if0", max_seconds=60)
    message = str(error.value)
    assert "could not capture on 'no-such-if0'" in message
    assert "no device named" in message.lower()
