"""Scoring capture files: read, cut with the training flows config, score, alert."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
from absl import logging

from stfe_jax.capture import CaptureFormatError, open_capture
from stfe_jax.detect.sink import AlertSink
from stfe_jax.flows import FlowBatch, cut_flows


def concat_flows(parts: list[FlowBatch]) -> FlowBatch:
    """One ``FlowBatch`` of several, in order."""
    if len(parts) == 1:
        return parts[0]
    return FlowBatch(
        **{
            field.name: np.concatenate([getattr(part, field.name) for part in parts])
            for field in dataclasses.fields(FlowBatch)
        }
    )


def detect_capture(sink: AlertSink, path: str, capture_index: int = 0) -> None:
    """Scores every flow of one capture file into ``sink``.

    A capture that cannot be read part-way still has the flows of the packets read
    before the damage scored; the reason lands in the summary (``error``). A file
    that is not a capture at all is recorded the same way, with no flows.
    """
    counts = sink.summary.capture(path)
    started = time.perf_counter()
    try:
        capture = open_capture(path)
    except (CaptureFormatError, OSError) as err:
        counts.error = f"not read: {err}"
        logging.error("%s", counts.error)
        return
    with capture:
        flows = cut_flows(
            capture.batches(), sink.detector.flows_config, capture_index=capture_index
        )
        # Flows are handed on in full scoring batches (the last one padded).
        pending, pending_flows = [], 0
        for flow_batch in flows:
            pending.append(flow_batch)
            pending_flows += len(flow_batch)
            if pending_flows >= sink.scorer.max_batch:
                sink.add(concat_flows(pending), path)
                pending, pending_flows = [], 0
        if pending:
            sink.add(concat_flows(pending), path)
    counts.packets = capture.packets_read
    counts.warnings = list(capture.warnings)
    for warning in capture.warnings:
        logging.warning("%s", warning)
    if capture.error:
        counts.error = (
            f"could not be read to its end: {capture.error}; alerts cover the "
            f"{capture.packets_read} packets read before it"
        )
        logging.error("%s: %s", path, counts.error)
    seconds = time.perf_counter() - started
    logging.info(
        "%s: %d packets, %d flows scored, %d alerts in %.1f s (%.0f flows/s)",
        path,
        counts.packets,
        counts.flows,
        counts.alerts,
        seconds,
        counts.flows / max(seconds, 1e-9),
    )


def detect_captures(sink: AlertSink, paths: Sequence[str]) -> None:
    """Scores every flow of each capture in ``paths`` (in order) into ``sink``."""
    started = time.perf_counter()
    for index, path in enumerate(paths):
        detect_capture(sink, str(path), capture_index=index)
    sink.summary.seconds += time.perf_counter() - started
