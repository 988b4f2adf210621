"""Packet-by-packet cross-check of the decoded fields against Wireshark's
dissectors (``tshark -T fields`` on several real captures, pyshark on a slice)."""

import asyncio
import decimal
import ipaddress
import shutil
import subprocess

import numpy as np
import pytest

from stfe_jax.capture import open_capture

# Real captures covering pcap both byte orders, pcapng with mixed timestamp
# resolutions, gzip, Ethernet with fragments and IPv6, Linux SLL, BSD NULL, raw IP.
CAPTURES = [
    "StopDDoS-packet-captures/amp.dns.RRSIG.fragmented.pcap",
    "nprint-examples/example/port443.pcap",
    "nDPI/tests/cfgs/default/pcap/sites.pcapng",
    "nDPI/tests/cfgs/default/pcap/KakaoTalk_chat.pcap",
    "nfstream-tests/tests/pcaps/rdp.pcap",
    "nDPI/tests/cfgs/default/pcap/ocs.pcap",
    "zeek-traces/testing/btest/Traces/ftp/ftp-many-port-expected.pcap.gz",
]
FIELDS = [
    "frame.time_epoch",
    "frame.cap_len",
    "frame.len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "ip.id",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "udp.srcport",
    "udp.dstport",
]
_SKIPPED_IPV6_HEADERS = {"ipv6.hopopts", "ipv6.routing", "ipv6.fraghdr", "ipv6.dstopts"}

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark is not installed"
)


def tshark_rows(path):
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    command += ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
    for field in FIELDS:
        command += ["-e", field]
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False
    ).stdout
    return [
        dict(zip(FIELDS, line.split("\t"), strict=True)) for line in output.splitlines()
    ]


def outermost(protocols: str) -> tuple[int, str | None]:
    """IP version of the outermost IP header in a frame.protocols string, and the
    protocol directly above it (past IPv6 extension headers)."""
    layers = protocols.split(":")
    for index, layer in enumerate(layers):
        if layer in ("ip", "ipv6"):
            above = [x for x in layers[index + 1 :] if x not in _SKIPPED_IPV6_HEADERS]
            return (4 if layer == "ip" else 6), (above[0] if above else None)
    return 0, None


def read_packets(path):
    with open_capture(path) as capture:
        batches = list(capture.batches())
    return capture, batches


def address(raw: np.ndarray) -> str:
    value = ipaddress.IPv6Address(raw.tobytes())
    return str(value.ipv4_mapped or value)


@needs_tshark
@pytest.mark.parametrize("relative", CAPTURES)
def test_fields_match_tshark_packet_by_packet(shared_dir, relative):
    path = shared_dir / "captures" / relative
    rows = tshark_rows(path)
    capture, batches = read_packets(path)
    assert capture.error is None
    assert capture.packets_read == len(rows) > 0

    mismatches = []
    checked_ports = 0
    index = 0
    for batch in batches:
        for i in range(len(batch)):
            row = rows[index]
            index += 1

            def expect(name, ours, theirs, row=row, number=index):
                if ours != theirs:
                    mismatches.append(
                        f"packet {number} {name}: ours {ours}, tshark {theirs}"
                    )

            seconds = decimal.Decimal(row["frame.time_epoch"])
            expect("ts_ns", int(batch.ts_ns[i]), int(seconds * 1_000_000_000))
            expect("caplen", int(batch.caplen[i]), int(row["frame.cap_len"]))
            expect("wirelen", int(batch.wirelen[i]), int(row["frame.len"]))
            version, above = outermost(row["frame.protocols"])
            expect("ip_version", int(batch.ip_version[i]), version)
            if version == 4 and row["ip.src"]:
                expect("src", address(batch.src_addr[i]), row["ip.src"])
                expect("dst", address(batch.dst_addr[i]), row["ip.dst"])
                expect("ip_id", int(batch.ip_id[i]), int(row["ip.id"], 16))
                expect("mf", bool(batch.more_fragments[i]), row["ip.flags.mf"] == "1")
                expect(
                    "frag_offset",
                    int(batch.frag_offset[i]) // 8,
                    int(row["ip.frag_offset"]),
                )
            if version == 6 and row["ipv6.src"]:
                expect("src", address(batch.src_addr[i]), row["ipv6.src"])
                expect("dst", address(batch.dst_addr[i]), row["ipv6.dst"])
                has_fragment = row["ipv6.fraghdr.offset"] != ""
                expect("is_fragment", bool(batch.is_fragment[i]), has_fragment)
            if above in ("tcp", "udp") and batch.l4_offset[i] + 4 <= batch.caplen[i]:
                checked_ports += 1
                expect("protocol", int(batch.protocol[i]), 6 if above == "tcp" else 17)
                expect("src_port", int(batch.src_port[i]), int(row[f"{above}.srcport"]))
                expect("dst_port", int(batch.dst_port[i]), int(row[f"{above}.dstport"]))
                if above == "tcp" and row["tcp.flags"]:
                    expect(
                        "tcp_flags",
                        int(batch.tcp_flags[i]),
                        int(row["tcp.flags"], 16) & 0xFF,
                    )

    assert not mismatches, "\n".join(mismatches[:30])
    assert checked_ports > 0


@needs_tshark
def test_packet_bytes_and_fields_match_pyshark(shared_dir):
    """pyshark (tshark's JSON with raw bytes) on a slice: every packet's bytes and
    the 5-tuple agree."""
    pyshark = pytest.importorskip("pyshark")
    path = shared_dir / "captures" / "nDPI/tests/cfgs/default/pcap/KakaoTalk_chat.pcap"
    _, batches = read_packets(path)
    batch = batches[0]
    limit = min(200, len(batch))

    asyncio.set_event_loop(asyncio.new_event_loop())
    capture = pyshark.FileCapture(
        str(path), use_json=True, include_raw=True, keep_packets=False
    )
    compared = 0
    try:
        for i, packet in enumerate(capture):
            if i >= limit:
                break
            assert packet.get_raw_packet() == batch.packet_bytes(i).tobytes(), i
            if "IP" in packet:
                assert address(batch.src_addr[i]) == packet.ip.src
                assert address(batch.dst_addr[i]) == packet.ip.dst
            if "TCP" in packet and packet.layers[2].layer_name == "tcp":
                assert int(batch.src_port[i]) == int(packet.tcp.srcport)
                assert int(batch.dst_port[i]) == int(packet.tcp.dstport)
            compared += 1
    finally:
        capture.close()
    assert compared == limit
