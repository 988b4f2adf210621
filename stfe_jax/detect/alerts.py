"""Alerts: which scored flows are alerts, their JSON Lines records, and the summary.

One alert per line of ``alerts.jsonl``::

  {"first_packet_time": "2026-12-03T17:52:44.123456789Z", "first_packet_ns": ...,
   "last_packet_time": ..., "last_packet_ns": ..., "src_addr": "10.0.0.1",
   "src_port": 51000, "dst_addr": "10.0.0.2", "dst_port": 80, "protocol": 6,
   "protocol_name": "tcp", "packets": 8, "bytes": 640, "anomaly_score": 0.97,
   "predicted_class": "anomalous", "capture": "/data/trace.pcap", ...}

The source side is the flow's initiator (the source of its first packet).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import ipaddress
import json
from typing import TextIO

import numpy as np

from stfe_jax.flows.columns import FlowBatch

PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 58: "icmpv6", 132: "sctp"}
_NS_PER_S = 1_000_000_000


def iso_time(ns: int) -> str:
    """ISO 8601 UTC time with nanoseconds, e.g. ``2026-12-03T17:52:44.000000001Z``."""
    seconds, fraction = divmod(int(ns), _NS_PER_S)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def address_text(address: np.ndarray, ip_version: int) -> str:
    """The text form of a 16-byte address column entry (IPv4 as dotted quad)."""
    raw = bytes(np.asarray(address, dtype=np.uint8))
    if ip_version == 4:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def is_alert(
    probabilities: np.ndarray,
    scores: np.ndarray,
    normal_class: int,
    threshold: float | None,
) -> np.ndarray:
    """(m,) bool: score >= threshold, or with no threshold, argmax is not benign."""
    if threshold is None:
        return np.argmax(probabilities, axis=1) != normal_class
    return scores >= threshold


def predicted_attack_class(probabilities: np.ndarray, normal_class: int) -> np.ndarray:
    """(m,) int: the most probable class other than the benign one."""
    others = probabilities.copy()
    if others.shape[1] > 1:
        others[:, normal_class] = -1.0
    return np.argmax(others, axis=1)


def alert_records(
    flows: FlowBatch,
    rows: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    class_names: list[str],
    capture: str,
    **extra,
) -> list[dict]:
    """JSON-ready alert dicts for the flows at ``rows`` of ``flows``.

    Args:
      flows: the flows' metadata.
      rows: indices into ``flows`` of the alerts.
      scores: (m,) anomaly score of every flow of ``flows``.
      classes: (m,) predicted class index of every flow.
      class_names: name of each class index.
      capture: the source capture (a path or ``live:<interface>``).
      extra: more fields written into every record.
    """
    records = []
    for i in np.asarray(rows).tolist():
        version = int(flows.ip_version[i])
        protocol = int(flows.protocol[i])
        record = {
            "first_packet_time": iso_time(flows.start_ns[i]),
            "first_packet_ns": int(flows.start_ns[i]),
            "last_packet_time": iso_time(flows.end_ns[i]),
            "last_packet_ns": int(flows.end_ns[i]),
            "src_addr": address_text(flows.src_addr[i], version),
            "src_port": int(flows.src_port[i]),
            "dst_addr": address_text(flows.dst_addr[i], version),
            "dst_port": int(flows.dst_port[i]),
            "protocol": protocol,
            "protocol_name": PROTOCOL_NAMES.get(protocol, str(protocol)),
            "ip_version": version,
            "packets": int(flows.packet_count[i]),
            "bytes": int(flows.byte_count[i]),
            "anomaly_score": round(float(scores[i]), 6),
            "predicted_class": class_names[int(classes[i])],
            "capture": capture,
        }
        record.update(extra)
        records.append(record)
    return records


class AlertWriter:
    """Appends alert records to a JSON Lines stream, one flushed line each."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.written = 0

    def write(self, records: list[dict]) -> None:
        """Writes each record as one line (flushed, so a reader can follow it)."""
        for record in records:
            self._stream.write(json.dumps(record, allow_nan=False) + "\n")
        if records:
            self._stream.flush()
        self.written += len(records)


@dataclasses.dataclass
class CaptureSummary:
    """Counts of one capture (or interface) scored."""

    packets: int = 0
    flows: int = 0
    alerts: int = 0
    error: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DetectSummary:
    """What a detection run scored and raised.

    Attributes:
      captures: capture (or ``live:<interface>``) -> its counts, in order seen.
      alerts_by_class: predicted class name -> alerts.
      seconds: wall time of the run.
      scoring_seconds: the part spent in the model.
      compile_seconds: time spent compiling the model before scoring (not
        counted in ``seconds``).
      packets_dropped: packets the capture engine dropped (live), None if unknown.
      notes: lines printed under the table (threshold, errors, drops).
    """

    captures: dict[str, CaptureSummary] = dataclasses.field(default_factory=dict)
    alerts_by_class: collections.Counter = dataclasses.field(
        default_factory=collections.Counter
    )
    seconds: float = 0.0
    scoring_seconds: float = 0.0
    packets_dropped: int | None = None
    compile_seconds: float = 0.0
    notes: list[str] = dataclasses.field(default_factory=list)

    def capture(self, name: str) -> CaptureSummary:
        """The counts of capture ``name`` (created empty on first use)."""
        return self.captures.setdefault(name, CaptureSummary())

    @property
    def flows(self) -> int:
        """Flows scored, all captures together."""
        return sum(c.flows for c in self.captures.values())

    @property
    def alerts(self) -> int:
        """Alerts raised, all captures together."""
        return sum(c.alerts for c in self.captures.values())

    @property
    def packets(self) -> int:
        """Packets read, all captures together."""
        return sum(c.packets for c in self.captures.values())

    def add(self, capture: str, flows: int, classes_of_alerts: list[str]) -> None:
        """Counts ``flows`` scored and the alerts (by class name) of one capture."""
        counts = self.capture(capture)
        counts.flows += flows
        counts.alerts += len(classes_of_alerts)
        self.alerts_by_class.update(classes_of_alerts)

    def to_dict(self) -> dict:
        """The summary as a JSON-ready dict."""
        return {
            "flows_scored": self.flows,
            "alerts": self.alerts,
            "alert_rate": self.alerts / self.flows if self.flows else 0.0,
            "packets": self.packets,
            "packets_dropped": self.packets_dropped,
            "alerts_by_class": dict(self.alerts_by_class),
            "captures": {
                name: dataclasses.asdict(counts)
                for name, counts in self.captures.items()
            },
            "seconds": self.seconds,
            "scoring_seconds": self.scoring_seconds,
            "compile_seconds": self.compile_seconds,
            "flows_per_s": self.flows / self.seconds if self.seconds else 0.0,
            "notes": list(self.notes),
        }

    def format_table(self) -> str:
        """A plain-text table: per capture, per class, totals, rates and notes."""
        rate = lambda a, f: f"{100.0 * a / f:.2f}%" if f else "-"  # noqa: E731
        lines = []
        name_width = max([len("capture"), *(len(n) for n in self.captures)])
        name_width = min(name_width, 60)
        header = (
            f"{'capture':<{name_width}} {'packets':>10} {'flows':>9} "
            f"{'alerts':>8} {'rate':>8}  status"
        )
        lines.append(header)
        lines.append("-" * len(header))
        for name, c in self.captures.items():
            shown = name if len(name) <= name_width else "..." + name[-name_width + 3 :]
            status = "read with error" if c.error else "ok"
            lines.append(
                f"{shown:<{name_width}} {c.packets:>10} {c.flows:>9} {c.alerts:>8} "
                f"{rate(c.alerts, c.flows):>8}  {status}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"{'total':<{name_width}} {self.packets:>10} {self.flows:>9} "
            f"{self.alerts:>8} {rate(self.alerts, self.flows):>8}"
        )
        lines.append("")
        lines.append("alerts by predicted class:")
        if not self.alerts_by_class:
            lines.append("  (none)")
        for name, count in self.alerts_by_class.most_common():
            lines.append(f"  {name:<20} {count:>8}")
        speed = self.flows / self.seconds if self.seconds else 0.0
        lines.append(
            f"{self.flows} flows scored in {self.seconds:.1f} s ({speed:.0f} flows/s; "
            f"{self.scoring_seconds:.1f} s in the model; compiled before, in "
            f"{self.compile_seconds:.1f} s)"
        )
        if self.packets_dropped is not None:
            lines.append(
                f"packets dropped by the capture engine: {self.packets_dropped}"
            )
        for name, c in self.captures.items():
            if c.error:
                lines.append(f"NOTE {name}: {c.error}")
        lines.extend(self.notes)
        return "\n".join(lines)
