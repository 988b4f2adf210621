"""Benchmark: the capture reader against dpkt and pyshark on the same capture.

Builds one Ethernet pcap of at least ``--min_packets`` packets by laying the real
Ethernet captures of ``../shared/captures`` end to end (every file whose packets
are all Ethernet, read with our reader), repeated with shifted timestamps, in a
temporary folder. Then, in one run, it reads that file:

- ours: ``open_capture`` + ``batches()``, which decodes timestamp, caplen, wirelen,
  link type, addresses, protocol, ports, TCP flags and fragment fields;
- dpkt: ``dpkt.pcap.Reader``, ``dpkt.ethernet.Ethernet(buf)``, then the IP/IPv6
  addresses and protocol and the TCP/UDP ports of the 5-tuple;
- pyshark (tshark's dissectors) on the first ``--pyshark_packets`` packets,

and prints packets/s for each and our speed as a multiple of theirs. Example::

    .venv/bin/python experiments/bench_read.py
"""

from __future__ import annotations

import asyncio
import pathlib
import struct
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stfe_jax.capture import open_capture  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "captures_dir", str(REPO.parent / "shared" / "captures"), "Real captures."
)
flags.DEFINE_integer("min_packets", 1_000_000, "Packets in the benchmark capture.")
flags.DEFINE_integer("pyshark_packets", 5000, "Packets pyshark reads (a slice).")
flags.DEFINE_integer("our_runs", 2, "Timed runs of our reader (the first loads JIT).")
flags.DEFINE_string("work_dir", None, "Where to build the capture (default: temp).")

NS = 1_000_000_000


def ethernet_packets(captures_dir: pathlib.Path):
    """Timestamps, bytes and wirelens of the packets of every all-Ethernet real
    capture, each file's timestamps shifted to follow the previous file's."""
    manifest = (captures_dir / "MANIFEST.tsv").read_text().splitlines()[1:]
    paths = [line.split("\t")[0] for line in manifest if "lt=EN10MB(1)" in line]
    ts_parts, data_parts, wirelen_parts = [], [], []
    cursor_ns = 1_500_000_000 * NS  # files laid end to end from here
    for relative in paths:
        with open_capture(captures_dir / relative) as capture:
            batches = list(capture.batches())
        if capture.error or set(capture.link_types) != {1}:
            continue
        first_ns = min(int(batch.ts_ns.min()) for batch in batches)
        last_ns = max(int(batch.ts_ns.max()) for batch in batches)
        if first_ns < 0 or last_ns - first_ns > 365 * 86400 * NS:
            first_ns = last_ns = 0  # nonsense clock: keep order, drop times
        for batch in batches:
            if last_ns == 0:
                ts_parts.append(np.full(len(batch), cursor_ns, dtype=np.int64))
            else:
                ts_parts.append(batch.ts_ns - first_ns + cursor_ns)
            wirelen_parts.append(batch.wirelen)
            data_parts.extend(
                batch.packet_bytes(i).tobytes() for i in range(len(batch))
            )
        cursor_ns += max(last_ns - first_ns, 0) + NS // 1000
    return (
        np.concatenate(ts_parts),
        data_parts,
        np.concatenate(wirelen_parts),
        len(paths),
    )


def build_capture(path: pathlib.Path, min_packets: int) -> int:
    """Writes the benchmark pcap; returns its packet count."""
    ts_ns, frames, wirelen, n_files = ethernet_packets(pathlib.Path(FLAGS.captures_dir))
    span = int(ts_ns.max() - ts_ns.min()) + NS // 1000
    repeats = -(-min_packets // len(frames))
    logging.info(
        "%d Ethernet packets from %d files, repeated %d times",
        len(frames),
        n_files,
        repeats,
    )
    header = struct.Struct("<IIII")
    with open(path, "wb", buffering=1 << 22) as sink:
        sink.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for repeat in range(repeats):
            shifted = ts_ns + repeat * span
            seconds, nanoseconds = np.divmod(shifted, NS)
            micros = (nanoseconds // 1000).tolist()
            seconds = seconds.tolist()
            lengths = wirelen.tolist()
            for i, frame in enumerate(frames):
                sink.write(header.pack(seconds[i], micros[i], len(frame), lengths[i]))
                sink.write(frame)
    return repeats * len(frames)


def read_ours(path: pathlib.Path) -> tuple[int, float, int]:
    started = time.perf_counter()
    packets = 0
    checksum = 0
    with open_capture(path) as capture:
        for batch in capture.batches():
            packets += len(batch)
            tcp_udp = (batch.protocol == 6) | (batch.protocol == 17)
            checksum += int(batch.src_port[tcp_udp].sum(dtype=np.int64))
            checksum += int(batch.dst_port[tcp_udp].sum(dtype=np.int64))
    return packets, time.perf_counter() - started, checksum


def read_dpkt(path: pathlib.Path) -> tuple[int, float, int, int]:
    import dpkt

    started = time.perf_counter()
    packets = 0
    checksum = 0
    failures = 0
    with open(path, "rb") as stream:
        for _, buf in dpkt.pcap.Reader(stream):
            packets += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.dpkt.Error, IndexError, ValueError, struct.error):
                failures += 1  # dpkt rejects some damaged or odd frames
                continue
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                protocol = ip.p
            elif isinstance(ip, dpkt.ip6.IP6):
                protocol = ip.nxt
            else:
                continue
            _ = (ip.src, ip.dst, protocol)
            transport = ip.data
            if isinstance(transport, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                checksum += transport.sport + transport.dport
    return packets, time.perf_counter() - started, checksum, failures


def read_pyshark(path: pathlib.Path, limit: int) -> tuple[int, float]:
    import pyshark

    asyncio.set_event_loop(asyncio.new_event_loop())
    started = time.perf_counter()
    packets = 0
    capture = pyshark.FileCapture(
        str(path), use_json=True, include_raw=True, keep_packets=False
    )
    try:
        for packet in capture:
            packets += 1
            layer = getattr(packet, "ip", None) or getattr(packet, "ipv6", None)
            if layer is not None:
                _ = (layer.src, layer.dst)
            transport = getattr(packet, "tcp", None) or getattr(packet, "udp", None)
            if transport is not None:
                _ = (transport.srcport, transport.dstport)
            if packets >= limit:
                break
    finally:
        capture.close()
    return packets, time.perf_counter() - started


def write_slice(source: pathlib.Path, target: pathlib.Path, count: int) -> None:
    """The first ``count`` packets of a little-endian microsecond pcap."""
    with open(source, "rb") as stream, open(target, "wb") as sink:
        sink.write(stream.read(24))
        for _ in range(count):
            header = stream.read(16)
            if len(header) < 16:
                break
            caplen = struct.unpack("<I", header[8:12])[0]
            sink.write(header + stream.read(caplen))


def run(work_dir: pathlib.Path) -> None:
    path = work_dir / "bench_ethernet.pcap"
    started = time.perf_counter()
    total = build_capture(path, FLAGS.min_packets)
    print(
        f"capture: {total} packets, {path.stat().st_size / 2**20:.0f} MiB, "
        f"built in {time.perf_counter() - started:.1f} s"
    )

    ours = []
    for run_index in range(FLAGS.our_runs):
        packets, seconds, our_checksum = read_ours(path)
        ours.append(packets / seconds)
        print(
            f"ours run {run_index + 1}: {packets} packets in {seconds:.2f} s = "
            f"{packets / seconds:,.0f} packets/s"
        )
    packets, seconds, dpkt_checksum, failures = read_dpkt(path)
    dpkt_rate = packets / seconds
    print(
        f"dpkt: {packets} packets in {seconds:.2f} s = {dpkt_rate:,.0f} packets/s "
        f"({failures} frames dpkt could not parse)"
    )
    if dpkt_checksum != our_checksum:
        # Expected: we also decode behind PPPoE, MPLS and other shims, and dpkt
        # rejects some damaged frames.
        print(f"TCP/UDP port sums: ours {our_checksum}, dpkt {dpkt_checksum}")

    slice_path = work_dir / "bench_slice.pcap"
    write_slice(path, slice_path, FLAGS.pyshark_packets)
    packets, seconds = read_pyshark(slice_path, FLAGS.pyshark_packets)
    pyshark_rate = packets / seconds
    print(
        f"pyshark: {packets} packets in {seconds:.2f} s = {pyshark_rate:,.0f} packets/s"
    )

    best = max(ours)
    first = ours[0] / dpkt_rate
    print(
        f"ratio ours/dpkt: {best / dpkt_rate:.1f}x (first run {first:.1f}x); "
        f"ours/pyshark: {best / pyshark_rate:.0f}x; bar: 20x dpkt"
    )


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.work_dir:
        work_dir = pathlib.Path(FLAGS.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        run(work_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_read_") as temporary:
            run(pathlib.Path(temporary))


if __name__ == "__main__":
    app.run(main)
