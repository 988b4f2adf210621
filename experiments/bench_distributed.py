"""Benchmark: cluster preprocessing throughput with 1 and 2 Dask workers.

Takes the largest real Ethernet pcaps of ``../shared/captures`` until they hold
``--packets`` packets, then builds their store three times, each into a fresh
folder: single-process ``build_store`` (the baseline), and
``preprocess_captures`` on a LocalCluster of 1 and of 2 worker processes. The
cluster is started before the clock starts (its start-up is printed apart), and
each worker reads one capture first so that its imports and compiled kernels are
loaded. Prints packets/s and flows/s side by side, the seconds spent inside the
per-capture work summed over captures (``work s``; above the wall time when
workers run in parallel), and the 2-worker / 1-worker ratio, and writes them to
``experiments/results/bench_distributed/report.json``.

    .venv/bin/python experiments/bench_distributed.py --packets=300000
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stfe_jax import configs  # noqa: E402
from stfe_jax.distributed import cluster_client, preprocess_captures  # noqa: E402
from stfe_jax.store import build_store  # noqa: E402

SHARED = REPO.parent / "shared" / "captures"


def pick_captures(target_packets: int) -> tuple[list[str], int]:
    """The largest Ethernet pcap/pcapng captures of the shared corpus, biggest
    first, until they hold ``target_packets`` packets; returns paths and count."""
    rows = []
    with open(SHARED / "MANIFEST.tsv", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t"), strict=False))
            fmt = row.get("format", "")
            if "EN10MB" not in fmt or not fmt.startswith(("pcap", "gzip")):
                continue
            rows.append((int(row.get("packets") or 0), str(SHARED / row["path"])))
    rows.sort(reverse=True)
    chosen, total = [], 0
    for packets, path in rows:
        if total >= target_packets:
            break
        chosen.append(path)
        total += packets
    return sorted(chosen), total


def warm_up(client, captures: list[str], flows_config) -> None:
    """Each worker builds ``captures`` into a scratch store (imports, kernels)."""
    from stfe_jax.distributed import CaptureJob, build_capture_shards
    from stfe_jax.flows.options import FlowOptions

    scratch = tempfile.mkdtemp(prefix="bench_warm_")
    options = FlowOptions.from_config(flows_config).to_dict()
    for i, worker in enumerate(client.scheduler_info()["workers"]):
        for j, capture in enumerate(captures):
            job = CaptureJob(i * len(captures) + j, capture, scratch, options, 65536)
            client.submit(
                build_capture_shards, job, workers=[worker], pure=False
            ).result()
    shutil.rmtree(scratch)


def run_cluster(captures, flows_config, workers: int, out: pathlib.Path) -> dict:
    started = time.perf_counter()
    with cluster_client(workers=workers) as client:
        client.wait_for_workers(workers)
        startup_s = time.perf_counter() - started
        warm_up(client, captures[:2], flows_config)
        began = time.perf_counter()
        summary = preprocess_captures(
            captures, out, flows_config, client=client, progress=False
        )
        seconds = time.perf_counter() - began
    assert not summary.failed, summary.failed
    return {
        "name": f"Dask LocalCluster, {workers} worker{'s' if workers > 1 else ''}",
        "seconds": seconds,
        "startup_s": startup_s,
        "packets": summary.packets,
        "flows": summary.flows,
        "work_s": _work_seconds(summary.manifest),
    }


def run_single(captures, flows_config, out: pathlib.Path) -> dict:
    began = time.perf_counter()
    store = build_store(captures, out, flows_config)
    seconds = time.perf_counter() - began
    packets = sum(r["packets_read"] for r in store.manifest["captures"])
    return {
        "name": "build_store, one process (baseline)",
        "seconds": seconds,
        "startup_s": 0.0,
        "packets": packets,
        "flows": store.num_flows,
        "work_s": _work_seconds(store.manifest),
    }


def _work_seconds(manifest: dict) -> float:
    """Seconds spent inside the per-capture work, summed over captures."""
    return float(sum(r["seconds"] or 0.0 for r in manifest["captures"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--work_dir", default=None)
    args = parser.parse_args()

    captures, expected = pick_captures(args.packets)
    flows_config = configs.get_config("cnn_lstm").flows
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="bench_dist_"))
    print(f"{len(captures)} captures, {expected} packets (manifest), in {work}")

    # Loads the compiled kernels into this process too before timing.
    build_store(captures[:2], work / "warm", flows_config)
    runs = [
        run_single(captures, flows_config, work / "single"),
        run_cluster(captures, flows_config, 1, work / "one"),
        run_cluster(captures, flows_config, 2, work / "two"),
    ]
    for run in runs:
        run["packets_per_s"] = run["packets"] / run["seconds"]
        run["flows_per_s"] = run["flows"] / run["seconds"]

    print()
    print(
        f"{'run':42s} {'seconds':>8s} {'packets/s':>11s} {'flows/s':>9s} "
        f"{'start-up s':>10s} {'work s':>7s}"
    )
    for run in runs:
        print(
            f"{run['name']:42s} {run['seconds']:8.2f} {run['packets_per_s']:11.0f} "
            f"{run['flows_per_s']:9.0f} {run['startup_s']:10.2f} {run['work_s']:7.2f}"
        )
    single, one, two = runs
    ratios = {
        "two_workers_over_one": two["packets_per_s"] / one["packets_per_s"],
        "one_worker_over_single_process": one["packets_per_s"]
        / single["packets_per_s"],
        "two_workers_over_single_process": two["packets_per_s"]
        / single["packets_per_s"],
    }
    for name, value in ratios.items():
        print(f"ratio {name}: {value:.2f}")

    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_1m_at_end": os.getloadavg()[0],
        "captures": len(captures),
        "runs": runs,
        "ratios": ratios,
    }
    out = REPO / "experiments" / "results" / "bench_distributed"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out / 'report.json'}")


if __name__ == "__main__":
    main()
