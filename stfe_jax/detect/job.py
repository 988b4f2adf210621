"""``run.py --mode=detect``: score captures or an interface and print the summary."""

from __future__ import annotations

import datetime
import json
import pathlib
import sys

from absl import logging

from stfe_jax.detect import alerts as alerts_lib
from stfe_jax.detect import checkpoint, live, offline, tools
from stfe_jax.detect.sink import AlertSink

ALERTS_FILE = "alerts.jsonl"
SUMMARY_FILE = "summary.json"


def default_output_dir() -> pathlib.Path:
    """``detect-<UTC time>`` below the current directory."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return pathlib.Path(f"detect-{stamp}")


def run(options, out=None) -> dict:
    """Runs detection as ``options`` (a ``stfe_jax.main.JobOptions``) asks.

    Reads ``checkpoint`` (a model dir or its ``checkpoints/``), and either the
    ``captures`` (paths or globs) or the live ``interface`` (with
    ``capture_filter``); writes ``alerts.jsonl`` and ``summary.json`` under
    ``workdir`` (default ``./detect-<UTC time>``); prints the summary table and,
    with ``explain`` = N, the dissection of the N highest-scoring alerts to
    ``out`` (default stdout). Returns the summary as a dict.

    Raises:
      ValueError: no checkpoint, or neither captures nor an interface.
      CheckpointError: the checkpoint cannot be used (says what differs).
      ToolMissingError: tshark/dumpcap needed and not installed (says how to).
    """
    from stfe_jax.main import expand_captures

    out = out or sys.stdout
    if not options.checkpoint:
        raise ValueError("--mode=detect needs --checkpoint=DIR (a trained model's dir)")
    if options.interface and options.captures:
        raise ValueError("give --interface or --captures, not both")
    if not options.interface and not options.captures:
        raise ValueError("--mode=detect needs --captures=FILE... or --interface=NAME")
    if options.explain:
        tools.require_tool("tshark", "--explain (Wireshark dissection of alerts)")
    if options.interface:
        live.find_capture_tool()
        paths = []
    else:
        paths = expand_captures(options.captures)

    detector = checkpoint.load_detector(options.checkpoint, threshold=options.threshold)
    out_dir = pathlib.Path(options.workdir) if options.workdir else default_output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    alerts_path = out_dir / ALERTS_FILE
    logging.info("Writing alerts to %s", alerts_path.resolve())

    live_capture_file = None
    with open(alerts_path, "w", encoding="utf-8") as stream:
        sink = AlertSink(
            detector,
            alerts_lib.AlertWriter(stream),
            keep_top=max(options.explain, 0),
            min_batch=live.LIVE_MIN_BATCH if options.interface else None,
        )
        if not options.interface:
            sink.summary.compile_seconds = sink.scorer.warm_up(
                checkpoint.example_batch(detector.flows_config)
            )
        if options.interface:
            live_capture_file = out_dir / "live.pcapng" if options.explain else None
            live.detect_live(
                sink,
                options.interface,
                capture_filter=options.capture_filter,
                save_to=live_capture_file,
            )
        else:
            offline.detect_captures(sink, paths)

    summary = sink.summary
    threshold = "argmax" if detector.threshold is None else f"{detector.threshold:.4f}"
    summary.notes.append(
        f"model {detector.model_name} from {detector.checkpoint_dir}; alert when "
        f"anomaly score (1 - p({detector.class_names[detector.normal_class]})) >= "
        f"{threshold} ({detector.threshold_source}); alerts in {alerts_path}"
    )
    if detector.synthetic:
        summary.notes.append(
            "NOTE the model was trained on SYNTHETIC traffic: a pipeline check, "
            "not evidence"
        )
    print(summary.format_table(), file=out)
    result = summary.to_dict()
    result["threshold"] = detector.threshold
    result["threshold_source"] = detector.threshold_source
    with open(out_dir / SUMMARY_FILE, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)

    if options.explain:
        from stfe_jax.detect import explain

        explain.explain_alerts(
            sink.top_alerts(),
            detector.flows_config,
            out=out,
            capture_override=str(live_capture_file) if live_capture_file else None,
        )
    return result
