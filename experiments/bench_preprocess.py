"""Benchmark: capture-to-store flow preprocessing against a dpkt + dict baseline.

Builds two long Ethernet captures from the real pcap captures of ``../shared``
(every little-endian microsecond Ethernet pcap of at least 500 packets, laid end to
end with shifted timestamps and repeated): one of at least ``--min_packets`` packets
and one ``--long_factor`` times longer. Each measured run is a child process that
reports its own wall time and peak RSS:

- ours: ``build_store`` (reader, flow kernel, shards, manifest, sha256);
- baseline: dpkt packet objects, a Python dict of open flows with the same flow
  rules and masks, tensors written as ``.npy`` chunks.

It prints packets/s, peak RSS and the ratios, checks that both produce the same
tensors (flows matched by start time and 5-tuple), and times the training batch
iterator over the store. Example::

    .venv/bin/python experiments/bench_preprocess.py --work_dir /tmp/bench_pre
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import struct
import subprocess
import sys
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "captures"
NS = 1_000_000_000
PORT_PROTOCOLS = (6, 17, 33, 132)
V4_PREFIX = bytes(10) + b"\xff\xff"


# -- input captures ------------------------------------------------------------


def source_captures(min_packets_each: int = 500) -> list[pathlib.Path]:
    """Real little-endian microsecond Ethernet pcaps of the shared corpus."""
    out = []
    with open(SHARED / "MANIFEST.tsv", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t"), strict=False))
            fmt = row.get("format", "")
            if not (fmt.startswith("pcap LE ts=us") and "EN10MB" in fmt):
                continue
            if int(row.get("packets") or 0) >= min_packets_each:
                out.append(SHARED / row["path"])
    return sorted(out)


def read_pcap_records(path: pathlib.Path) -> list[tuple[int, bytes, int]]:
    """(ts_ns, data, wirelen) of every whole record of a LE microsecond pcap."""
    data = path.read_bytes()
    records, pos = [], 24
    while pos + 16 <= len(data):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", data, pos)
        if pos + 16 + caplen > len(data):
            break
        records.append(
            (sec * NS + usec * 1000, data[pos + 16 : pos + 16 + caplen], wirelen)
        )
        pos += 16 + caplen
    return records


def make_capture(path: pathlib.Path, min_packets: int, factor: int = 1) -> int:
    """Write ``factor`` times the shortest capture of at least ``min_packets``
    packets made of whole passes over the sources; returns its packets."""
    from stfe_jax.synth.writers import write_pcap

    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("min_packets") == min_packets and info.get("factor") == factor:
            return info["packets"]

    # One pass: every source capture after the previous one, 1 s apart, its
    # records in time order (a few sources hold timestamps that go backwards) and
    # gaps over an hour cut to an hour (some span years; both sides of such a gap
    # are far beyond any flow timeout either way).
    one_pass, cursor = [], 1_500_000_000 * NS
    for source in source_captures():
        records = sorted(read_pcap_records(source), key=lambda r: r[0])
        if not records:
            continue
        ts = np.array([r[0] for r in records], dtype=np.int64)
        gaps = np.minimum(np.diff(ts, prepend=ts[0]), 3600 * NS)
        shifted = cursor + np.cumsum(gaps)
        one_pass += [
            (int(t), data, wl)
            for t, (_, data, wl) in zip(shifted, records, strict=True)
        ]
        cursor = int(shifted[-1]) + NS
        if len(one_pass) >= min_packets:  # a small run needs only a prefix
            one_pass = one_pass[:min_packets]
            cursor = one_pass[-1][0] + NS
            break
    span = cursor - 1_500_000_000 * NS
    repeats = -(-min_packets // len(one_pass)) * factor

    def records():
        for k in range(repeats):
            for ts, data, wirelen in one_pass:
                yield ts + k * span, data, wirelen

    count = write_pcap(path, records())
    info = {"min_packets": min_packets, "factor": factor, "packets": count}
    meta.write_text(json.dumps(info))
    return count


# -- the baseline: dpkt objects and a dict of flows ------------------------------


def _is_icmp_error(proto: int, icmp_type: int) -> bool:
    return icmp_type in (3, 4, 5, 11, 12) if proto == 1 else 1 <= icmp_type <= 4


def _quoted_five_tuple(buf: bytes, icmp: int, proto: int):
    """(src, dst, protocol, src port, dst port) an ICMP error quotes, or None."""
    if icmp >= len(buf) or not _is_icmp_error(proto, buf[icmp]):
        return None
    q = icmp + 8
    if proto == 1:
        if q + 20 > len(buf) or buf[q] >> 4 != 4 or buf[q + 6] & 0x1F or buf[q + 7]:
            return None
        inner = buf[q + 9]
        src, dst = V4_PREFIX + buf[q + 12 : q + 16], V4_PREFIX + buf[q + 16 : q + 20]
        l4 = q + (buf[q] & 0x0F) * 4
    else:
        if q + 40 > len(buf) or buf[q] >> 4 != 6:
            return None
        inner, src, dst = buf[q + 6], buf[q + 8 : q + 24], buf[q + 24 : q + 40]
        l4 = q + 40
    ports = (0, 0)
    if inner in PORT_PROTOCOLS:
        if l4 + 4 > len(buf):
            return None
        ports = struct.unpack_from("!HH", buf, l4)
    return src, dst, inner, *ports


def _mask_quoted(row: bytearray, q: int, kept: int, proto: int, o) -> None:
    def zero(a: int, b: int) -> None:
        for j in range(a, min(b, kept)):
            row[j] = 0

    if q >= kept:
        return
    if proto == 1:
        if row[q] >> 4 != 4:
            return
        if o.mask_addresses:
            zero(q + 12, q + 20)
        if o.mask_ip_checksum_id:
            zero(q + 4, q + 6)
            zero(q + 10, q + 12)
        if o.mask_ttl:
            zero(q + 8, q + 9)
        if q + 9 >= kept:
            return
        inner, l4 = row[q + 9], q + (row[q] & 0x0F) * 4
    else:
        if row[q] >> 4 != 6:
            return
        if o.mask_addresses:
            zero(q + 8, q + 40)
        if o.mask_ttl:
            zero(q + 7, q + 8)
        if o.mask_ipv6_flow_label:
            if q + 1 < kept:
                row[q + 1] &= 0xF0
            zero(q + 2, q + 4)
        if q + 6 >= kept:
            return
        inner, l4 = row[q + 6], q + 40
    if o.mask_ports and inner in PORT_PROTOCOLS:
        zero(l4, l4 + 4)
    if o.mask_ip_checksum_id and inner == 17:
        zero(l4 + 6, l4 + 8)
    if o.mask_tcp_seq_ack and inner == 6:
        zero(l4 + 4, l4 + 12)


def _mask_row(row: bytearray, kept: int, version: int, proto: int, l4: int, o) -> None:
    def zero(a: int, b: int) -> None:
        for j in range(a, min(b, kept)):
            row[j] = 0

    if version == 4:
        if o.mask_addresses:
            zero(12, 20)
        if o.mask_ip_checksum_id:
            zero(4, 6)
            zero(10, 12)
        if o.mask_ttl:
            zero(8, 9)
    else:
        if o.mask_addresses:
            zero(8, 40)
        if o.mask_ttl:
            zero(7, 8)
        if o.mask_ipv6_flow_label:
            if kept > 1:
                row[1] &= 0xF0
            zero(2, 4)
    if l4 < 0 or l4 >= kept:
        return
    if proto in (1, 58) and _is_icmp_error(proto, row[l4]):
        if o.mask_ip_checksum_id and proto == 1:
            zero(l4 + 2, l4 + 4)
        _mask_quoted(row, l4 + 8, kept, proto, o)
    if o.mask_ports and proto in PORT_PROTOCOLS:
        zero(l4, l4 + 4)
    if o.mask_ip_checksum_id:
        checksum_at = {6: 16, 17: 6, 58: 2}.get(proto)
        if checksum_at is not None:
            zero(l4 + checksum_at, l4 + checksum_at + 2)
    if proto != 6:
        return
    if o.mask_tcp_seq_ack:
        zero(l4 + 4, l4 + 12)
    if o.mask_tcp_timestamps and l4 + 12 < kept:
        end = min(l4 + (row[l4 + 12] >> 4) * 4, kept)
        j = l4 + 20
        while j < end and row[j] != 0:
            if row[j] == 1:
                j += 1
                continue
            if j + 1 >= end or row[j + 1] < 2:
                break
            if row[j] == 8:
                for q in range(j + 2, min(j + row[j + 1], end)):
                    row[q] = 0
            j += row[j + 1]


def run_baseline(capture: pathlib.Path, out_dir: pathlib.Path, options) -> dict:
    """Cut flows the way a Python user would: dpkt objects, a dict of flows."""
    import dpkt

    from stfe_jax.flows.options import CLOSE_WAIT_S, FRAGMENT_TIMEOUT_S

    p, b = options.packets_per_flow, options.bytes_per_packet
    idle, active = options.idle_timeout_s * NS, options.active_timeout_s * NS
    close_wait, frag_timeout = CLOSE_WAIT_S * NS, FRAGMENT_TIMEOUT_S * NS
    out_dir.mkdir(parents=True, exist_ok=True)
    flows: dict = {}
    fragments: dict = {}
    finished: list = []
    chunks = 0
    packets = 0
    last_sweep = -(2**62)
    now = -(2**62)

    def end(key):
        nonlocal chunks
        finished.append(flows.pop(key))
        if len(finished) >= 65536:
            write_chunk(finished, out_dir / f"chunk{chunks:05d}", p, b)
            finished.clear()
            chunks += 1

    with open(capture, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            packets += 1
            ts = round(ts * 1e6) * 1000
            now = max(now, ts)
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except dpkt.UnpackError:
                continue
            ip = eth.data
            off = 14 + 4 * len(getattr(eth, "vlan_tags", None) or [])
            frag_first = frag_later = False
            if isinstance(ip, dpkt.ip.IP):
                version, src, dst = 4, V4_PREFIX + ip.src, V4_PREFIX + ip.dst
                proto, ident = ip.p, ip.id
                frag_offset = (ip._flags_offset & 0x1FFF) * 8
                more = bool(ip._flags_offset & 0x2000)
                frag_first, frag_later = more and frag_offset == 0, frag_offset > 0
                l4 = -1 if frag_later else ip.hl * 4
            elif isinstance(ip, dpkt.ip6.IP6):
                version, src, dst, proto = 6, ip.src, ip.dst, ip.p
                l4 = 40 + sum(ext.length for ext in ip.all_extension_headers)
                frag = ip.extension_hdrs.get(44)
                ident = frag.id if frag is not None else 0
                if frag is not None:
                    frag_later = frag.frag_off > 0
                    frag_first = not frag_later
                    l4 = -1 if frag_later else l4
            else:
                continue
            sport = dport = 0
            flags = 0
            if l4 >= 0 and proto in PORT_PROTOCOLS and off + l4 + 4 <= len(buf):
                sport, dport = struct.unpack_from("!HH", buf, off + l4)
                if proto == 6 and off + l4 + 14 <= len(buf):
                    flags = buf[off + l4 + 13]
            if frag_first:
                fragments[(src, dst, proto, ident)] = (sport, dport, ts)
            elif frag_later:
                first = fragments.get((src, dst, proto, ident))
                if first is None or abs(ts - first[2]) > frag_timeout:
                    continue
                sport, dport = first[0], first[1]

            key_proto = proto
            if proto in (1, 58) and l4 >= 0 and not (frag_first or frag_later):
                quoted = _quoted_five_tuple(buf, off + l4, proto)
                if quoted is not None:
                    q_src, q_dst, q_proto, q_sport, q_dport = quoted
                    q_key = (
                        (q_src, q_sport, q_dst, q_dport, q_proto)
                        if (q_src, q_sport) <= (q_dst, q_dport)
                        else (q_dst, q_dport, q_src, q_sport, q_proto)
                    )
                    q_flow = flows.get(q_key)
                    if (
                        q_flow is not None
                        and q_flow["fin"] != 3
                        and ts - q_flow["last"] <= idle
                        and ts - q_flow["start"] <= active
                    ):
                        src, dst, sport, dport = q_dst, q_src, q_dport, q_sport
                        key_proto = q_proto

            src_lo = (src, sport) <= (dst, dport)
            key = (
                (src, sport, dst, dport, key_proto)
                if src_lo
                else (dst, dport, src, sport, key_proto)
            )
            flow = flows.get(key)
            pure_ack = flags == 0x10
            if flow is not None:
                gap = ts - flow["last"]
                if flow["fin"] == 3 and not (pure_ack and gap <= close_wait):
                    end(key)
                elif gap > idle or ts - flow["start"] > active:
                    end(key)
                flow = flows.get(key)
            if flow is None:
                flow = {
                    "start": ts, "last": ts, "count": 0, "fwd": 0,
                    "fin": 0, "init_lo": src_lo, "flags": 0, "proto": proto,
                    "version": version, "src": src, "dst": dst, "sport": sport,
                    "dport": dport, "rows": [], "caplen": [], "dir": [], "iat": [],
                }  # fmt: skip
                flows[key] = flow
            direction = 0 if src_lo == flow["init_lo"] else 1
            if len(flow["rows"]) < p:
                avail = max(len(buf) - off, 0)
                kept = min(avail, b)
                row = bytearray(buf[off : off + kept]) + bytearray(b - kept)
                _mask_row(row, kept, version, proto, l4, options)
                flow["rows"].append(bytes(row))
                flow["caplen"].append(min(avail, 65535))
                flow["dir"].append(direction)
                flow["iat"].append(
                    (ts - flow["last"]) * 1e-9 if flow["rows"][1:] else 0.0
                )
            flow["last"] = ts
            flow["count"] += 1
            flow["fwd"] += direction == 0
            flow["flags"] |= flags
            if flags & 0x04:
                end(key)
            elif flags & 0x01:
                flow["fin"] |= 1 << direction
            elif flow["fin"] == 3 and pure_ack:
                end(key)
            if now - last_sweep >= NS:
                last_sweep = now
                for k in [
                    k
                    for k, fl in flows.items()
                    if (fl["fin"] == 3 and now - fl["last"] > close_wait)
                    or now - fl["last"] > idle
                    or now - fl["start"] > active
                ]:
                    end(k)
    for key in sorted(flows, key=lambda k: flows[k]["start"]):
        finished.append(flows[key])
    flows.clear()
    write_chunk(finished, out_dir / f"chunk{chunks:05d}", p, b)
    return {"packets": packets}


def write_chunk(finished: list, folder: pathlib.Path, p: int, b: int) -> None:
    """Write finished baseline flows as .npy columns."""
    folder.mkdir(parents=True, exist_ok=True)
    m = len(finished)
    packets = np.zeros((m, p, b), np.uint8)
    caplen = np.zeros((m, p), np.uint16)
    direction = np.zeros((m, p), np.uint8)
    iat = np.zeros((m, p), np.float32)
    for i, fl in enumerate(finished):
        k = len(fl["rows"])
        packets[i, :k] = np.frombuffer(b"".join(fl["rows"]), np.uint8).reshape(k, b)
        caplen[i, :k] = fl["caplen"]
        direction[i, :k] = fl["dir"]
        iat[i, :k] = fl["iat"]
    columns = {
        "packets": packets,
        "packet_caplen": caplen,
        "direction": direction,
        "iat_s": iat,
        "start_ns": np.array([fl["start"] for fl in finished], np.int64),
        "packet_count": np.array([fl["count"] for fl in finished], np.int64),
        "fwd_packet_count": np.array([fl["fwd"] for fl in finished], np.int64),
        "protocol": np.array([fl["proto"] for fl in finished], np.uint8),
        "src_port": np.array([fl["sport"] for fl in finished], np.uint16),
        "dst_port": np.array([fl["dport"] for fl in finished], np.uint16),
        "src_addr": np.frombuffer(
            b"".join(fl["src"] for fl in finished), np.uint8
        ).reshape(m, 16),
        "dst_addr": np.frombuffer(
            b"".join(fl["dst"] for fl in finished), np.uint8
        ).reshape(m, 16),
    }
    for name, array in columns.items():
        np.save(folder / f"{name}.npy", array)


# -- children and the report -----------------------------------------------------


def child_main(args) -> None:
    """Run one measured job in this (child) process and print a JSON line."""
    from stfe_jax.flows.options import FlowOptions

    options = FlowOptions.from_config(json.loads(args.flows_config))
    capture = pathlib.Path(args.capture)
    out = pathlib.Path(args.out)
    warmup = 0.0
    if args.child == "ours":
        warmup = warm_up(out.with_name(out.name + "_warmup"), options)
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    if args.child == "ours":
        from stfe_jax.store import build_store

        store = build_store([capture], out, options)
        packets = store.manifest["captures"][0]["packets_read"]
        flows = store.num_flows
    else:
        packets = run_baseline(capture, out, options)["packets"]
        flows = sum(
            np.load(f, mmap_mode="r").shape[0] for f in out.glob("chunk*/start_ns.npy")
        )
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_started
    sampler.stop = True
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {
        "packets": packets,
        "flows": int(flows),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "warmup_seconds": warmup,
        "peak_rss_mib": peak_kib / 1024,
        "rss_by_quarter_mib": sampler.quarters(),
    }
    print(json.dumps(report))


class RssSampler(threading.Thread):
    """Samples this process's resident memory ten times a second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[int] = []
        self.stop = False

    def run(self) -> None:
        import psutil

        process = psutil.Process()
        while not self.stop:
            self.samples.append(process.memory_info().rss)
            time.sleep(0.1)

    def quarters(self) -> list[int | None]:
        """The highest sample (MiB) in each quarter of the run (None: no sample,
        the run was too short)."""
        parts = np.array_split(np.array(self.samples, dtype=np.int64), 4)
        return [round(int(part.max()) / 2**20) if part.size else None for part in parts]


def _cpu_seconds() -> float:
    """User plus system CPU seconds of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def warm_up(folder: pathlib.Path, options) -> float:
    """Load the compiled reader and flow kernels (numba's one-off cost per
    process) on a 3-packet capture; returns the seconds it took."""
    import shutil

    from stfe_jax.store import build_store
    from stfe_jax.synth import packets as pk
    from stfe_jax.synth.writers import write_pcap

    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    datagram = pk.udp(src_port=1, dst_port=2)
    packet = pk.ipv4(datagram, src="10.0.0.1", dst="10.0.0.2", protocol=17)
    frame = pk.ethernet(packet, ethertype=pk.ETHERTYPE_IPV4)
    write_pcap(folder / "tiny.pcap", [(k * NS, frame) for k in range(3)])
    build_store([folder / "tiny.pcap"], folder / "store", options)
    shutil.rmtree(folder)
    return time.perf_counter() - started


def run_child(
    kind: str, capture: pathlib.Path, out: pathlib.Path, config: dict
) -> dict:
    """One measured job in a fresh process; its JSON report."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        __file__,
        "--child", kind,
        "--capture", str(capture),
        "--out", str(out),
        "--flows_config", json.dumps(config),
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_outputs(store_dir: pathlib.Path, baseline_dir: pathlib.Path) -> str:
    """How many flows of both runs have identical tensors and metadata."""
    from stfe_jax.store import Store

    store = Store.open(store_dir)
    names = [
        "start_ns", "protocol", "src_port", "dst_port", "src_addr", "dst_addr",
        "packet_count", "fwd_packet_count", "packets", "packet_caplen",
        "direction", "iat_s",
    ]  # fmt: skip
    ours = {n: store.column(n)[:] for n in names}
    chunks = sorted(baseline_dir.glob("chunk*"))
    theirs = {
        n: np.concatenate([np.load(c / f"{n}.npy") for c in chunks]) for n in names
    }

    def flow_keys(cols) -> dict:
        """(start, protocol, ports, addresses) -> row, for flows unique by it."""
        keys = zip(
            cols["start_ns"].tolist(),
            cols["protocol"].tolist(),
            cols["src_port"].tolist(),
            cols["dst_port"].tolist(),
            map(bytes, cols["src_addr"]),
            map(bytes, cols["dst_addr"]),
            strict=True,
        )
        return {key: row for row, key in enumerate(keys)}

    ours_keys, theirs_keys = flow_keys(ours), flow_keys(theirs)
    common = sorted(set(ours_keys) & set(theirs_keys))
    a = np.array([ours_keys[k] for k in common], dtype=np.int64)
    b = np.array([theirs_keys[k] for k in common], dtype=np.int64)
    same = np.ones(a.size, bool)
    mismatched = []
    for n in names:
        x, y = ours[n][a], theirs[n][b]
        eq = (x == y).reshape(a.size, -1).all(axis=1)
        if not eq.all():
            mismatched.append(f"{n}: {int((~eq).sum())}")
        same &= eq
    detail = (
        f"; differing flows per column: {', '.join(mismatched)}" if mismatched else ""
    )
    return (
        f"{int(same.sum()):,} of {a.size:,} flows found by both are identical "
        f"(tensors and metadata){detail}; flows found by ours only: "
        f"{len(ours_keys) - len(common):,}, by the baseline only: "
        f"{len(theirs_keys) - len(common):,} (ours decodes PPPoE, MPLS, NSH and "
        "other encapsulations that dpkt's Ethernet class leaves undecoded)"
    )


def batch_rate(store_dir: pathlib.Path, steps: int, batch_size: int) -> str:
    """Samples/s of the training batch iterator over the store."""
    try:
        from stfe_jax.store.batches import DEFAULT_COLUMNS, iterate_train_batches
    except ImportError as err:
        return f"batch iterator not available ({err})"
    from stfe_jax.store import Store

    store = Store.open(store_dir)
    arrays = store.arrays(list(DEFAULT_COLUMNS))
    batches = iterate_train_batches(
        arrays, np.arange(store.num_flows), batch_size, seed=0, start_step=0
    )
    next(batches)
    started = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
    seconds = time.perf_counter() - started
    assert batch["packets"].shape[0] == batch_size
    rate = steps * batch_size / seconds
    return f"{rate:,.0f} samples/s ({steps} batches of {batch_size})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="/tmp/stfe_bench_preprocess")
    parser.add_argument("--min_packets", type=int, default=1_000_000)
    parser.add_argument("--long_factor", type=int, default=4)
    parser.add_argument(
        "--baseline_long",
        action="store_true",
        help="also run the baseline on the long capture",
    )
    parser.add_argument("--batch_steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--flows_config", default="{}")
    parser.add_argument("--child", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--capture", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    work = pathlib.Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    config = json.loads(args.flows_config)
    lengths = {"1x": 1, f"{args.long_factor}x": args.long_factor}
    captures = {}
    for name, factor in lengths.items():
        path = work / f"capture_{name}.pcap"
        count = make_capture(path, args.min_packets, factor)
        captures[name] = path
        print(
            f"capture {name}: {path} ({count:,} packets, "
            f"{path.stat().st_size / 2**20:,.0f} MiB)",
            flush=True,
        )

    results = {}
    for name, path in captures.items():
        results[("ours", name)] = run_child(
            "ours", path, work / f"store_{name}", config
        )
        if name == "1x" or args.baseline_long:
            results[("baseline", name)] = run_child(
                "baseline", path, work / f"baseline_{name}", config
            )

    print(
        f"\n{'run':<10}{'capture':>8}{'packets':>12}{'flows':>10}{'wall s':>9}"
        f"{'CPU s':>8}{'packets/s':>12}{'packets/CPU s':>15}{'peak RSS MiB':>14}"
    )
    for (kind, name), r in results.items():
        print(
            f"{kind:<10}{name:>8}{r['packets']:>12,}{r['flows']:>10,}"
            f"{r['seconds']:>9.1f}{r['cpu_seconds']:>8.1f}"
            f"{r['packets'] / r['seconds']:>12,.0f}"
            f"{r['packets'] / r['cpu_seconds']:>15,.0f}{r['peak_rss_mib']:>14,.0f}"
        )
    ours, base = results[("ours", "1x")], results[("baseline", "1x")]
    print(
        f"(ours excludes a one-off {ours['warmup_seconds']:.1f} s per process that "
        "loads the compiled kernels, timed on a 3-packet capture)"
    )
    speedup = (ours["packets"] / ours["seconds"]) / (base["packets"] / base["seconds"])
    cpu_speedup = base["cpu_seconds"] / ours["cpu_seconds"]
    print(
        f"\nspeed, ours / dpkt baseline (1x, wall): {speedup:.1f}x (bar: >= 10x) "
        f"{'PASS' if speedup >= 10 else 'FAIL'}"
    )
    print(f"speed, ours / dpkt baseline (1x, CPU time): {cpu_speedup:.1f}x")
    long = results[("ours", f"{args.long_factor}x")]
    growth = long["peak_rss_mib"] / ours["peak_rss_mib"]
    print(
        f"peak RSS, ours {args.long_factor}x / 1x capture: {growth:.2f} "
        "(bar: does not grow with length, <= 1.25) "
        + ("PASS" if growth <= 1.25 else "FAIL")
    )
    for (kind, name), r in results.items():
        print(
            f"RSS of {kind} {name}, highest in each quarter of the run (MiB): "
            f"{r['rss_by_quarter_mib']}"
        )
    if ("baseline", f"{args.long_factor}x") in results:
        bl = results[("baseline", f"{args.long_factor}x")]
        print(
            f"peak RSS, baseline {args.long_factor}x / 1x: "
            f"{bl['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
        )
    print(
        "same tensors as the baseline (1x): "
        + compare_outputs(work / "store_1x", work / "baseline_1x")
    )
    print(
        "batch iterator from the store: "
        + batch_rate(work / "store_1x", args.batch_steps, args.batch_size)
    )


if __name__ == "__main__":
    main()
