"""Detection throughput: flows scored per second per model, reading+cutting vs
scoring, and (as root) how many packets/s the live path keeps up with on loopback
next to pyshark's LiveCapture.

  python experiments/bench_detect.py                      # offline, all models
  python experiments/bench_detect.py --checkpoints=runs/X # trained --model=all run
  python experiments/bench_detect.py --live               # also the loopback test

Without --checkpoints the models are the default (full-size) configs with freshly
initialised parameters: scoring speed does not depend on the weights' values. The
baseline is the same model scoring one flow per call (no batching).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import jax
from absl import app, flags, logging

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from stfe_jax import configs  # noqa: E402
from stfe_jax.capture import open_capture  # noqa: E402
from stfe_jax.detect import alerts as alerts_lib  # noqa: E402
from stfe_jax.detect import checkpoint, live  # noqa: E402
from stfe_jax.detect.offline import concat_flows  # noqa: E402
from stfe_jax.detect.scoring import FlowScorer  # noqa: E402
from stfe_jax.detect.sink import AlertSink  # noqa: E402
from stfe_jax.flows import cut_flows  # noqa: E402
from stfe_jax.models import build_model  # noqa: E402
from stfe_jax.synth import mawi_day  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoints", None, "A --model=all training workdir.")
flags.DEFINE_float("scale", 1.0, "Size of the generated day scored (1.0: ~17k flows).")
flags.DEFINE_list("models", ["mlp", "cnn", "lstm", "cnn_lstm"], "Models to time.")
flags.DEFINE_integer("batch_size", 1024, "Scoring batch (flows).")
flags.DEFINE_integer("baseline_flows", 300, "Flows scored one per call (baseline).")
flags.DEFINE_bool("live", False, "Also measure the live path on loopback (root).")
flags.DEFINE_bool("offline", True, "Measure offline scoring of a generated day.")
flags.DEFINE_list(
    "live_rates",
    ["5000", "20000", "50000", "0"],
    "Packets/s offered on loopback per step; 0: as fast as possible.",
)
flags.DEFINE_float("live_seconds", 4.0, "Seconds each live step sends.")
flags.DEFINE_string("out", "experiments/results/bench_detect.json", "Results file.")


def _untrained_detector(name: str) -> checkpoint.Detector:
    config = configs.get_config(name)
    model = build_model(config.model)
    example = checkpoint.example_batch(config.flows)
    params = model.init(jax.random.key(0), example)["params"]
    return checkpoint.Detector(
        checkpoint_dir=pathlib.Path("-"),
        config=config,
        flows_config=config.flows.to_dict(),
        class_names=["normal", "anomalous"],
        normal_class=0,
        threshold=0.5,
        threshold_source="bench",
        model=model,
        params=jax.device_get(params),
        synthetic=True,
    )


def _detector(name: str) -> checkpoint.Detector:
    if FLAGS.checkpoints:
        return checkpoint.load_detector(pathlib.Path(FLAGS.checkpoints) / name)
    return _untrained_detector(name)


def _read_and_cut(path, flows_config):
    started = time.perf_counter()
    with open_capture(path) as capture:
        parts = list(cut_flows(capture.batches(), flows_config))
        packets = capture.packets_read
    return concat_flows(parts), packets, time.perf_counter() - started


def bench_offline(capture_path) -> dict:
    results = {}
    cut_cache = {}
    for name in FLAGS.models:
        detector = _detector(name)
        key = json.dumps(detector.flows_config, sort_keys=True)
        if key not in cut_cache:
            # Load the reader's and cutter's compiled code first: a numba compile
            # is a one-off cost, not reading speed.
            live.warm_up_flow_assembly(detector.flows_config)
            cut_cache[key] = _read_and_cut(capture_path, detector.flows_config)
        flows, packets, cut_s = cut_cache[key]

        scorer = FlowScorer(
            detector.model,
            detector.params,
            detector.normal_class,
            max_batch=FLAGS.batch_size,
            min_batch=FLAGS.batch_size,
        )
        compile_s = scorer.warm_up(
            {
                "packets": flows.packets[:1],
                "packet_caplen": flows.packet_caplen[:1],
                "direction": flows.direction[:1],
                "iat_s": flows.iat_s[:1],
                "n_packets": flows.n_packets[:1],
            }
        )
        started = time.perf_counter()
        scorer.probabilities(flows)
        score_s = time.perf_counter() - started

        single = FlowScorer(
            detector.model,
            detector.params,
            detector.normal_class,
            max_batch=1,
            min_batch=1,
        )
        n_single = min(FLAGS.baseline_flows, len(flows))
        subset = {
            k: getattr(flows, k)[:n_single]
            for k in ("packets", "packet_caplen", "direction", "iat_s", "n_packets")
        }
        single.warm_up(subset)
        started = time.perf_counter()
        for i in range(n_single):
            single.probabilities({k: v[i : i + 1] for k, v in subset.items()})
        single_s = time.perf_counter() - started

        batched_rate = len(flows) / score_s
        single_rate = n_single / single_s
        results[name] = {
            "flows": len(flows),
            "packets": packets,
            "read_cut_s": cut_s,
            "compile_s": compile_s,
            "score_s": score_s,
            "flows_per_s_scoring": batched_rate,
            "flows_per_s_end_to_end": len(flows) / (cut_s + score_s),
            "read_cut_share": cut_s / (cut_s + score_s),
            "baseline_one_flow_per_call_flows_per_s": single_rate,
            "batched_over_baseline": batched_rate / single_rate,
        }
        logging.info("%s: %s", name, results[name])
    return results


_SENDER = r"""
import socket, sys, time
rate, seconds, port_low = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
payload = b"x" * 64
sent, began = 0, time.perf_counter()
while True:
    now = time.perf_counter() - began
    if now >= seconds:
        break
    if rate and sent >= rate * now:
        time.sleep(0.0005)
        continue
    for _ in range(16):
        # 64 source sockets x 64 ports: flows of many packets each.
        sockets[sent % 64].sendto(payload, ("127.0.0.1", port_low + (sent // 64) % 64))
        sent += 1
print(sent, time.perf_counter() - began)
"""
PORT_LOW = 47600
LIVE_FILTER = f"udp dst portrange {PORT_LOW}-{PORT_LOW + 63}"


def _send(rate: float) -> tuple[int, float]:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _SENDER,
            str(rate),
            str(FLAGS.live_seconds),
            str(PORT_LOW),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    sent, seconds = completed.stdout.split()
    return int(sent), float(seconds)


def bench_live_ours(detector, rate: float) -> dict:
    scratch = tempfile.TemporaryDirectory()
    with open(pathlib.Path(scratch.name) / "alerts.jsonl", "w") as stream:
        sink = AlertSink(
            detector, alerts_lib.AlertWriter(stream), min_batch=live.LIVE_MIN_BATCH
        )
        started, stop = threading.Event(), threading.Event()
        sent = {}

        def drive():
            started.wait(timeout=300)
            time.sleep(0.5)
            sent["packets"], sent["seconds"] = _send(rate)
            time.sleep(2.0)
            stop.set()

        driver = threading.Thread(target=drive)
        driver.start()
        result = live.detect_live(
            sink,
            "lo",
            capture_filter=LIVE_FILTER,
            stop=stop,
            started=started,
            max_seconds=300,
        )
        driver.join()
    scratch.cleanup()
    return {
        "offered_packets": sent["packets"],
        "offered_per_s": sent["packets"] / sent["seconds"],
        "engine_received": result["engine"]["received"],
        "engine_dropped": result["engine"]["dropped"],
        "read_and_cut": result["packets"],
        "flows_scored": sink.summary.flows,
        "kept_up": result["packets"] >= sent["packets"],
    }


def bench_live_pyshark(rate: float) -> dict:
    import asyncio

    import pyshark

    asyncio.set_event_loop(asyncio.new_event_loop())
    capture = pyshark.LiveCapture(
        interface="lo", bpf_filter=LIVE_FILTER, use_json=True, include_raw=True
    )
    sent = {}

    def drive():
        time.sleep(3.0)  # tshark starts
        sent["packets"], sent["seconds"] = _send(rate)

    driver = threading.Thread(target=drive)
    times = []
    driver.start()
    try:
        # Stops at the timeout when packets were dropped and fewer arrive.
        capture.apply_on_packets(
            lambda packet: times.append(time.monotonic()),
            timeout=FLAGS.live_seconds + 40,
        )
    except TimeoutError:
        pass
    finally:
        capture.close()
        driver.join()
    decoded = len(times)
    first, last = (times[0], times[-1]) if times else (None, None)
    elapsed = (last - first) if first and last and last > first else float("nan")
    return {
        "offered_packets": sent.get("packets"),
        "offered_per_s": sent["packets"] / sent["seconds"] if sent else None,
        "decoded_within_window": decoded,
        "decoded_per_s": decoded / elapsed if elapsed == elapsed else None,
        "kept_up": bool(sent) and decoded >= sent["packets"],
    }


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    results = {}
    if FLAGS.offline:
        results["offline"] = run_offline()
    if FLAGS.live:
        results["live"] = run_live()
    out = pathlib.Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out}")


def run_offline() -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        day = mawi_day.generate_day(pathlib.Path(scratch), seed=7, scale=FLAGS.scale)
        offline = bench_offline(day.capture_path)
    print(
        f"\nOffline, generated day (seed 7, scale {FLAGS.scale}), batch "
        f"{FLAGS.batch_size}, {jax.device_count()} {jax.default_backend()} device(s)"
    )
    print(
        f"{'model':<9} {'flows':>6} {'read+cut s':>10} {'score s':>8} "
        f"{'compile s':>9} {'flows/s':>9} {'e2e fl/s':>9} {'read+cut':>8} "
        f"{'1/call fl/s':>11} {'ratio':>6}"
    )
    for name, r in offline.items():
        print(
            f"{name:<9} {r['flows']:>6} {r['read_cut_s']:>10.2f} {r['score_s']:>8.2f} "
            f"{r['compile_s']:>9.1f} {r['flows_per_s_scoring']:>9.0f} "
            f"{r['flows_per_s_end_to_end']:>9.0f} {r['read_cut_share']:>8.0%} "
            f"{r['baseline_one_flow_per_call_flows_per_s']:>11.0f} "
            f"{r['batched_over_baseline']:>5.1f}x"
        )
    sys.stdout.flush()
    return offline


def run_live() -> dict | None:
    reason = live_rights_missing()
    if reason:
        print(f"\nLive: skipped ({reason})")
        return None
    detector = _detector("cnn_lstm")
    print(
        "\nLive on loopback (UDP, 64x64 flows), cnn_lstm: our dumpcap pipe "
        "vs pyshark LiveCapture (use_json, include_raw)"
    )
    print(
        f"{'offered/s':>10} {'offered':>8} {'engine rx':>9} {'drops':>6} "
        f"{'ours read':>9} {'ours ok':>7} {'pyshark':>8} {'pysh/s':>7} "
        f"{'pysh ok':>7}",
        flush=True,
    )
    rows = []
    for rate in (float(r) for r in FLAGS.live_rates):
        a = bench_live_ours(detector, rate)
        b = bench_live_pyshark(rate)
        rows.append({"ours": a, "pyshark": b})
        print(
            f"{a['offered_per_s']:>10.0f} {a['offered_packets']:>8} "
            f"{a['engine_received']!s:>9} {a['engine_dropped']!s:>6} "
            f"{a['read_and_cut']:>9} {a['kept_up']!s:>7} "
            f"{b['decoded_within_window']:>8} "
            f"{(b['decoded_per_s'] or 0):>7.0f} {b['kept_up']!s:>7}",
            flush=True,
        )
    return rows


def live_rights_missing() -> str | None:
    import os
    import shutil

    if shutil.which("dumpcap") is None:
        return "dumpcap is not installed"
    if os.geteuid() != 0:
        return "not root"
    return None


if __name__ == "__main__":
    app.run(main)
