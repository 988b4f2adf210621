"""Helpers of the detection tests (no tests here): captures built in code, the
tiny model the tests share, and the per-flow ground truth of a generated day.

Benign traffic: TCP sessions (handshake, request, response, FIN close) and DNS-like
UDP exchanges. The anomaly: a SYN scan of many closed ports (SYN, then RST-ACK).
The shared model is the tiny CNN-LSTM trained on the built-in synthetic day.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from stfe_jax.synth import packets as p
from stfe_jax.synth import writers

SECOND_NS = 1_000_000_000
START_NS = 1_700_000_000 * SECOND_NS
SCANNER = "198.51.100.7"
SCAN_TARGET = "10.2.0.5"


def _frame(src: str, dst: str, protocol: int, segment: bytes, ttl: int = 64) -> bytes:
    return p.ethernet(
        p.ipv4(segment, src=src, dst=dst, protocol=protocol, ttl=ttl),
        ethertype=p.ETHERTYPE_IPV4,
    )


def _tcp(src, dst, sport, dport, flags, seq=0, ack=0, payload=b"", window=64240):
    segment = p.tcp(
        src_port=sport,
        dst_port=dport,
        flags=flags,
        seq=seq,
        ack=ack,
        payload=payload,
        window=window,
        src_ip=src,
        dst_ip=dst,
    )
    return _frame(src, dst, p.IPPROTO_TCP, segment)


def tcp_session(rng, t_ns: int, client: str, server: str, sport: int, dport: int):
    """(ts_ns, frame) records of one benign TCP session closed by FINs."""
    c_seq, s_seq = int(rng.integers(2**31)), int(rng.integers(2**31))
    rtt = int(rng.integers(2, 40)) * 1_000_000
    request = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
    body_len = int(rng.integers(200, 1200))
    steps = [
        (client, "S", c_seq, 0, b""),
        (server, "SA", s_seq, c_seq + 1, b""),
        (client, "A", c_seq + 1, s_seq + 1, b""),
        (client, "PA", c_seq + 1, s_seq + 1, request),
        (server, "A", s_seq + 1, c_seq + 1 + len(request), b""),
        (server, "PA", s_seq + 1, c_seq + 1 + len(request), bytes(body_len)),
        (client, "A", c_seq + 1 + len(request), s_seq + 1 + body_len, b""),
        (client, "FA", c_seq + 1 + len(request), s_seq + 1 + body_len, b""),
        (server, "FA", s_seq + 1 + body_len, c_seq + 2 + len(request), b""),
        (client, "A", c_seq + 2 + len(request), s_seq + 2 + body_len, b""),
    ]
    records = []
    for k, (sender, flags, seq, ack, payload) in enumerate(steps):
        if sender == client:
            frame = _tcp(client, server, sport, dport, flags, seq, ack, payload)
        else:
            frame = _tcp(server, client, dport, sport, flags, seq, ack, payload)
        records.append((t_ns + k * rtt // 2, frame))
    return records


def dns_exchange(rng, t_ns: int, client: str, server: str, sport: int):
    """(ts_ns, frame) records of a DNS-like UDP query and its response."""
    query = bytes(rng.integers(0, 256, int(rng.integers(30, 60)), dtype=np.uint8))
    answer = query + bytes(
        rng.integers(0, 256, int(rng.integers(16, 120)), dtype=np.uint8)
    )
    q = p.udp(src_port=sport, dst_port=53, payload=query, src_ip=client, dst_ip=server)
    a = p.udp(src_port=53, dst_port=sport, payload=answer, src_ip=server, dst_ip=client)
    delay = int(rng.integers(1, 30)) * 1_000_000
    return [
        (t_ns, _frame(client, server, p.IPPROTO_UDP, q)),
        (t_ns + delay, _frame(server, client, p.IPPROTO_UDP, a)),
    ]


def benign_records(seed: int, sessions: int, start_ns: int = START_NS):
    """Records of ``sessions`` TCP sessions and as many DNS exchanges, time-ordered."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(sessions):
        t = start_ns + int(rng.integers(0, 60 * SECOND_NS))
        client = f"10.1.{int(rng.integers(0, 8))}.{int(rng.integers(1, 250))}"
        server = f"10.2.0.{int(rng.integers(1, 20))}"
        sport = int(rng.integers(32768, 60999))
        dport = int(rng.choice([80, 443, 8080]))
        records += tcp_session(rng, t, client, server, sport, dport)
        t = start_ns + int(rng.integers(0, 60 * SECOND_NS))
        records += dns_exchange(rng, t, client, "10.2.0.53", sport ^ 0x55)
    records.sort(key=lambda record: record[0])
    return records


def scan_records(
    seed: int,
    ports: int,
    start_ns: int = START_NS,
    scanner: str = SCANNER,
    target: str = SCAN_TARGET,
):
    """Records of a SYN scan of ``ports`` closed ports: SYN, then RST-ACK."""
    rng = np.random.default_rng(seed)
    records = []
    targets = rng.choice(np.arange(1, 65535), ports, replace=False)
    sport = int(rng.integers(40000, 60000))
    t = start_ns + int(rng.integers(0, 10 * SECOND_NS))
    for port in targets.tolist():
        seq = int(rng.integers(2**31))
        t += int(rng.integers(1, 50)) * 1_000_000
        records.append(
            (t, _tcp(scanner, target, sport, port, "S", seq, 0, window=1024))
        )
        records.append(
            (
                t + 200_000,
                _tcp(target, scanner, port, sport, "RA", 0, seq + 1, window=0),
            )
        )
    return records


def write_capture(path: pathlib.Path, records) -> pathlib.Path:
    """Writes time-ordered records as a pcap; returns the path."""
    records = sorted(records, key=lambda record: record[0])
    writers.write_pcap(path, records)
    return path


# Training of the shared test model: the tiny config with more steps than its
# default 60, so that the model separates the injected anomalies reliably.
SYNTHETIC_SCALE = 0.2
TRAIN_OVERRIDES = ("train.steps=600", "train.eval_every=100")


def train_synthetic_model(
    workdir: pathlib.Path, model: str = "cnn_lstm"
) -> pathlib.Path:
    """Trains the tiny ``model`` on the built-in synthetic day (seed 0); returns
    the model dir."""
    from stfe_jax import main

    model_dir = workdir / "model"
    main.train_job(
        main.JobOptions(
            model=model,
            tiny=True,
            synthetic_scale=SYNTHETIC_SCALE,
            synthetic_seed=0,
            workdir=str(model_dir),
            overrides=list(TRAIN_OVERRIDES),
        )
    )
    return model_dir


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> pathlib.Path:
    """A tiny CNN-LSTM trained on the built-in synthetic day (shared by the tests)."""
    workdir = tmp_path_factory.mktemp("detect_model")
    return train_synthetic_model(workdir)


def flow_truth(capture: pathlib.Path, label_paths, flows_config) -> dict:
    """Ground truth of every flow of ``capture``: identity -> class name.

    Flows are cut with ``flows_config`` (as detection cuts them) and labelled from
    the MAWILab-format files with the binary policy; the identity is (first packet
    ns, source address text, source port, destination address text, destination
    port, protocol), the fields of an alert record.
    """
    from stfe_jax import labels
    from stfe_jax.capture import open_capture
    from stfe_jax.detect.alerts import address_text
    from stfe_jax.flows import cut_flows

    parts = []
    with open_capture(capture) as opened:
        parts.extend(cut_flows(opened.batches(), flows_config))
    meta = {
        name: np.concatenate([getattr(part, name) for part in parts])
        for name in (
            "start_ns",
            "end_ns",
            "protocol",
            "src_addr",
            "dst_addr",
            "src_port",
            "dst_port",
            "capture_index",
            "ip_version",
            "packet_count",
        )
    }
    labelled = labels.label_flows(
        meta, [str(capture)], [str(p) for p in label_paths], {"policy": "binary"}
    )
    truth = {}
    for i in range(len(meta["start_ns"])):
        version = int(meta["ip_version"][i])
        identity = alert_identity_of(
            int(meta["start_ns"][i]),
            address_text(meta["src_addr"][i], version),
            int(meta["src_port"][i]),
            address_text(meta["dst_addr"][i], version),
            int(meta["dst_port"][i]),
            int(meta["protocol"][i]),
        )
        class_id = int(labelled.class_id[i])
        truth[identity] = labelled.class_names[class_id] if class_id >= 0 else None
    return truth


def alert_identity_of(start_ns, src_addr, src_port, dst_addr, dst_port, protocol):
    """The identity of a flow as ``flow_truth`` keys it."""
    return (start_ns, src_addr, src_port, dst_addr, dst_port, protocol)


def alert_identity(alert: dict) -> tuple:
    """The identity of the flow of an alert record."""
    return alert_identity_of(
        alert["first_packet_ns"],
        alert["src_addr"],
        alert["src_port"],
        alert["dst_addr"],
        alert["dst_port"],
        alert["protocol"],
    )
