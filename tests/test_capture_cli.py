"""The ``python -m stfe_jax.capture`` command and the counts behind it."""

import io
import json
import os
import pathlib
import subprocess
import sys

import pytest

from stfe_jax.capture.summary import summarize_capture
from stfe_jax.synth import packets as pk
from stfe_jax.synth import writers

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
T0_NS = 1_650_000_000_000_000_000


def tcp_packet(src, dst, sport, dport, **kwargs):
    segment = pk.tcp(src_port=sport, dst_port=dport, flags="A")
    return pk.ethernet(
        pk.ipv4(segment, src=src, dst=dst, protocol=pk.IPPROTO_TCP, **kwargs),
        ethertype=0x0800,
    )


def udp6_packet(src, dst, sport, dport):
    segment = pk.udp(src_port=sport, dst_port=dport)
    return pk.ethernet(
        pk.ipv6(segment, src=src, dst=dst, next_header=pk.IPPROTO_UDP),
        ethertype=0x86DD,
    )


@pytest.fixture()
def mixed_capture(tmp_path):
    """Two TCP conversations (one seen both ways), one UDP/IPv6 conversation,
    a non-first fragment, an ICMP packet and an ARP frame."""
    packets = [
        tcp_packet("10.0.0.1", "10.0.0.2", 1000, 80),
        tcp_packet("10.0.0.2", "10.0.0.1", 80, 1000),  # same conversation
        tcp_packet("10.0.0.1", "10.0.0.2", 1001, 80),
        udp6_packet("2001:db8::1", "2001:db8::2", 53, 5353),
        udp6_packet("2001:db8::2", "2001:db8::1", 5353, 53),
        pk.ethernet(
            pk.ipv4(
                bytes(16),
                src="10.0.0.1",
                dst="10.0.0.2",
                protocol=6,
                frag_offset_bytes=1480,
            ),
            ethertype=0x0800,
        ),
        pk.ethernet(
            pk.ipv4(
                pk.icmp_echo(ident=1, seq=1),
                src="10.0.0.1",
                dst="10.0.0.3",
                protocol=pk.IPPROTO_ICMP,
            ),
            ethertype=0x0800,
        ),
        pk.ethernet(bytes(28), ethertype=pk.ETHERTYPE_ARP),
    ]
    path = tmp_path / "mixed.pcap"
    writers.write_pcap(path, [(T0_NS + i, p) for i, p in enumerate(packets)])
    return path


def test_summarize_capture_counts(mixed_capture):
    summary = summarize_capture(mixed_capture)
    assert summary["format"] == "pcap"
    assert summary["link_types"] == {"1": 8}
    assert summary["packets"] == 8
    assert summary["ipv4"] == 5 and summary["ipv6"] == 2
    assert summary["tcp"] == 3  # the non-first fragment carries no TCP header
    assert summary["udp"] == 2
    assert summary["ip_fragments"] == 1
    assert summary["tcp_udp_conversations"] == 3
    assert summary["warnings"] == [] and summary["error"] is None


def test_summarize_capture_of_a_stream(mixed_capture):
    summary = summarize_capture(io.BytesIO(mixed_capture.read_bytes()))
    assert summary["packets"] == 8 and summary["tcp_udp_conversations"] == 3


def test_conversations_span_batches(tmp_path):
    """The same conversations repeated over many batches count once."""
    packets = [tcp_packet("10.0.0.1", "10.0.0.2", 1000 + i % 5, 80) for i in range(300)]
    path = tmp_path / "repeat.pcap"
    writers.write_pcap(path, [(T0_NS + i, p) for i, p in enumerate(packets)])
    summary = summarize_capture(path)
    assert summary["tcp_udp_conversations"] == 5


def run_cli(*paths):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "stfe_jax.capture", *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_cli_prints_one_json_line_per_file_and_exit_status(mixed_capture, tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file")

    clean = run_cli(mixed_capture)
    assert clean.returncode == 0, clean.stderr
    (line,) = clean.stdout.splitlines()
    assert json.loads(line) == summarize_capture(mixed_capture)

    mixed = run_cli(garbage, mixed_capture, tmp_path / "missing.pcap")
    assert mixed.returncode == 1
    first, second, third = (json.loads(x) for x in mixed.stdout.splitlines())
    assert first["path"] == str(garbage) and "offset 0" in first["error"]
    assert second["packets"] == 8 and second["error"] is None
    assert third["error"] and "missing.pcap" in third["error"]
    expected_keys = {
        "path",
        "format",
        "link_types",
        "packets",
        "ipv4",
        "ipv6",
        "tcp",
        "udp",
        "ip_fragments",
        "tcp_udp_conversations",
        "warnings",
        "error",
    }
    assert set(first) == expected_keys
