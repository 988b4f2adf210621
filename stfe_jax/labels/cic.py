"""CICFlowMeter-style flow CSVs (CIC-IDS2017 and kin) matched to our flows.

A CIC CSV has one row per flow the CICFlowMeter tool cut, with a ``Label``. Header
names carry stray spaces (`` Source IP``), and the tool's versions differ in names
(``Source IP`` / ``Src IP``). A row is keyed by its 5-tuple, from the five columns
or, failing those, from ``Flow ID`` (``ip-ip-port-port-protocol``), and by its
``Timestamp``: the flow's start in the lab's local time, written day first
(``03/07/2017 09:08:11``, ``3/7/2017 9:08``, ...). The time zone is a parameter
(the CIC data sets were recorded at UTC-3).

A row matches a flow of ours when the 5-tuples agree in either direction and the
row's start lies within the flow's ``[start, end]``, the row's time widened by its
resolution (a second, or a minute when the format has no seconds) and both sides
by ``tolerance_s``. The two flow meters cut flows differently: CICFlowMeter ends a
TCP flow at its first FIN and starts a new one with the next packet, where our
cutter keeps one flow until the idle timeout, so one of our flows often holds
several CIC rows. A flow matched by several rows takes the row whose timestamp is
nearest the flow's start; flows holding rows of another label too are counted as
conflicts in the report. CICFlowMeter writes
protocol 0 and ports 0 for flows that are neither TCP nor UDP; such rows match
our non-TCP/UDP flows between the same two addresses.

TODO: some CIC-IDS2017 files write a 12-hour clock without AM/PM (``3:30`` for
15:30); such times cannot be told apart from the text alone and are read as
24-hour times.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import pathlib
import re
from collections.abc import Mapping

import numpy as np
from absl import logging

from stfe_jax.labels.addresses import ADDRESS_BYTES, address_row

PORT_PROTOCOLS = (6, 17)
_OTHER_PROTOCOL = 255  # key protocol for rows and flows that are not TCP/UDP

_COLUMN_ALIASES = {
    "src_ip": ("source ip", "src ip", "srcip"),
    "dst_ip": ("destination ip", "dst ip", "dstip"),
    "src_port": ("source port", "src port", "srcport"),
    "dst_port": ("destination port", "dst port", "dstport"),
    "protocol": ("protocol",),
    "flow_id": ("flow id",),
    "timestamp": ("timestamp",),
    "label": ("label",),
}

# (format, resolution in seconds); day-first as CIC writes dates.
TIMESTAMP_FORMATS = (
    ("%d/%m/%Y %H:%M:%S", 1),
    ("%d/%m/%Y %H:%M", 60),
    ("%d/%m/%Y %I:%M:%S %p", 1),
    ("%d/%m/%Y %I:%M %p", 60),
    ("%Y-%m-%d %H:%M:%S.%f", 1e-6),
    ("%Y-%m-%d %H:%M:%S", 1),
    ("%Y-%m-%dT%H:%M:%S.%f", 1e-6),
    ("%Y-%m-%dT%H:%M:%S", 1),
    ("%d-%m-%Y %H:%M:%S", 1),
    ("%d-%m-%Y %H:%M", 60),
)


class CicFormatError(ValueError):
    """A CIC flow CSV that cannot be read (names file and line)."""


def parse_timezone(text: str | float | int) -> datetime.timezone:
    """A fixed UTC offset from ``"-03:00"``, ``"+0530"``, ``"UTC"`` or hours."""
    if isinstance(text, (int, float)):
        return datetime.timezone(datetime.timedelta(hours=float(text)))
    text = text.strip()
    if text.upper() in ("UTC", "Z", "GMT"):
        return datetime.UTC
    match = re.fullmatch(r"(?:UTC)?([+-])(\d{1,2}):?(\d{2})?", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"time zone: expected an offset like '-03:00', found {text!r}")
    sign = -1 if match.group(1) == "-" else 1
    offset = datetime.timedelta(
        hours=int(match.group(2)), minutes=int(match.group(3) or 0)
    )
    return datetime.timezone(sign * offset)


def parse_timestamp(text: str, timezone: datetime.timezone) -> tuple[int, int]:
    """Nanoseconds since the epoch and resolution in ns of a CIC timestamp."""
    text = " ".join(text.split())
    for fmt, resolution_s in TIMESTAMP_FORMATS:
        try:
            moment = datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
        moment = moment.replace(tzinfo=timezone)
        seconds = int(moment.timestamp() // 1)
        ns = seconds * 1_000_000_000 + moment.microsecond * 1000
        return ns, int(resolution_s * 1e9)
    raise ValueError(f"expected a timestamp like '03/07/2017 09:08:11', found {text!r}")


def looks_like_cic(head: bytes) -> bool:
    """Whether a file's first bytes are a CIC flow CSV header."""
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("utf-8", "replace")
    columns = {" ".join(c.split()).lower() for c in first.split(",")}
    has_tuple = {"source ip", "destination ip"} <= columns or {
        "src ip",
        "dst ip",
    } <= columns
    return (
        "label" in columns
        and "timestamp" in columns
        and (has_tuple or "flow id" in columns)
    )


@dataclasses.dataclass
class CicRows:
    """The rows of a CIC CSV as columns (addresses as 16-byte rows)."""

    src_addr: np.ndarray
    dst_addr: np.ndarray
    src_port: np.ndarray  # int32
    dst_port: np.ndarray
    protocol: np.ndarray  # int16
    start_ns: np.ndarray  # int64
    resolution_ns: np.ndarray  # int64
    label: np.ndarray  # str
    duplicate_rows: int = 0  # rows whose every field repeats an earlier row


def _columns(header: list[str], path) -> dict[str, int]:
    names = [" ".join(name.split()).lower() for name in header]
    found = {}
    for key, aliases in _COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in names:
                found[key] = names.index(alias)
                break
    tuple_keys = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
    if "label" not in found or "timestamp" not in found:
        raise CicFormatError(f"{path}: line 1: expected Label and Timestamp columns")
    if not all(key in found for key in tuple_keys) and "flow_id" not in found:
        raise CicFormatError(
            f"{path}: line 1: expected the 5-tuple columns (Source IP, Source Port, "
            "Destination IP, Destination Port, Protocol) or Flow ID"
        )
    return found


def read_cic_csv(path: str | pathlib.Path, timezone: str = "-03:00") -> CicRows:
    """The rows of a CICFlowMeter CSV; ``timezone`` is the lab's UTC offset."""
    path = pathlib.Path(path)
    zone = parse_timezone(timezone)
    n_rows_hint = 0
    src, dst, sport, dport, proto, start, resolution, labels = ([] for _ in range(8))
    time_cache: dict[str, tuple[int, int]] = {}
    seen_rows: set[int] = set()
    duplicates = empty_rows = 0
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise CicFormatError(f"{path}: empty file")
        cols = _columns(header, path)
        use_tuple = all(
            key in cols
            for key in ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
        )
        for line, row in enumerate(reader, start=2):
            if not any(field.strip() for field in row):
                # Some CIC-IDS2017 files end in long runs of rows of bare commas.
                empty_rows += 1
                continue
            row_hash = hash(tuple(row))
            duplicates += row_hash in seen_rows
            seen_rows.add(row_hash)
            if len(row) < len(header):
                raise CicFormatError(
                    f"{path}: line {line}: expected {len(header)} fields, "
                    f"found {len(row)}"
                )
            try:
                if use_tuple:
                    a, b = row[cols["src_ip"]], row[cols["dst_ip"]]
                    pa, pb = row[cols["src_port"]], row[cols["dst_port"]]
                    p = row[cols["protocol"]]
                else:
                    a, b, pa, pb, p = row[cols["flow_id"]].strip().rsplit("-", 4)
                src.append(address_row(a))
                dst.append(address_row(b))
                sport.append(int(float(pa)))
                dport.append(int(float(pb)))
                proto.append(int(float(p)))
                text = row[cols["timestamp"]].strip()
                if text not in time_cache:
                    time_cache[text] = parse_timestamp(text, zone)
            except ValueError as error:
                raise CicFormatError(f"{path}: line {line}: {error}") from None
            ns, res = time_cache[text]
            start.append(ns)
            resolution.append(res)
            labels.append(row[cols["label"]].strip())
            n_rows_hint += 1

    def addresses(rows):
        joined = b"".join(rows)
        return np.frombuffer(joined, dtype=np.uint8).reshape(len(rows), ADDRESS_BYTES)

    logging.info(
        "CIC CSV %s: %d rows (%d duplicates), %d empty rows skipped",
        path,
        n_rows_hint,
        duplicates,
        empty_rows,
    )
    return CicRows(
        src_addr=addresses(src),
        dst_addr=addresses(dst),
        src_port=np.array(sport, dtype=np.int32),
        dst_port=np.array(dport, dtype=np.int32),
        protocol=np.array(proto, dtype=np.int16),
        start_ns=np.array(start, dtype=np.int64),
        resolution_ns=np.array(resolution, dtype=np.int64),
        label=np.array(labels, dtype=str),
        duplicate_rows=duplicates,
    )


def _canonical_keys(src, dst, sport, dport, proto) -> np.ndarray:
    """Direction-free 5-tuple keys as 37-byte void rows (lower end first)."""
    proto = np.asarray(proto).astype(np.int16)
    other = ~np.isin(proto, PORT_PROTOCOLS)
    sport = np.where(other, 0, sport).astype(">u2")
    dport = np.where(other, 0, dport).astype(">u2")
    proto = np.where(other, _OTHER_PROTOCOL, proto).astype(np.uint8)
    end_a = np.concatenate([src, sport.view(np.uint8).reshape(-1, 2)], axis=1)
    end_b = np.concatenate([dst, dport.view(np.uint8).reshape(-1, 2)], axis=1)
    # End B sorts first when its first byte differing from end A is smaller.
    diff = end_b.astype(np.int16) - end_a.astype(np.int16)
    first_diff = np.argmax(diff != 0, axis=1)
    swap = (np.take_along_axis(diff, first_diff[:, None], axis=1) < 0).reshape(-1, 1)
    low = np.where(swap, end_b, end_a)
    high = np.where(swap, end_a, end_b)
    rows = np.concatenate([proto.reshape(-1, 1), low, high], axis=1)
    return np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel()


@dataclasses.dataclass
class CicMatch:
    """Per-flow CIC labels ('' unmatched), the matched row per flow, counts."""

    names: np.ndarray
    row_index: np.ndarray  # int64 per flow, -1 unmatched
    rows_matched: np.ndarray  # bool per row
    report: dict


def match_cic(
    flow_meta: Mapping[str, np.ndarray], rows: CicRows, tolerance_s: float = 2.0
) -> CicMatch:
    """Match CIC rows to flows by 5-tuple (either direction) and start time."""
    n = len(flow_meta["start_ns"])
    flow_keys = _canonical_keys(
        np.asarray(flow_meta["src_addr"]),
        np.asarray(flow_meta["dst_addr"]),
        np.asarray(flow_meta["src_port"]),
        np.asarray(flow_meta["dst_port"]),
        np.asarray(flow_meta["protocol"]),
    )
    row_keys = _canonical_keys(
        rows.src_addr, rows.dst_addr, rows.src_port, rows.dst_port, rows.protocol
    )
    _, inverse = np.unique(np.concatenate([flow_keys, row_keys]), return_inverse=True)
    inverse = inverse.ravel()
    flow_ids, row_ids = inverse[:n], inverse[n:]

    order = np.argsort(flow_ids, kind="stable")
    sorted_ids = flow_ids[order]
    lo = np.searchsorted(sorted_ids, row_ids, side="left")
    hi = np.searchsorted(sorted_ids, row_ids, side="right")
    counts = hi - lo
    row_of_pair = np.repeat(np.arange(len(row_ids)), counts)
    run_starts = np.repeat(np.cumsum(counts) - counts, counts)
    flow_of_pair = order[np.repeat(lo, counts) + (np.arange(counts.sum()) - run_starts)]

    tolerance_ns = int(tolerance_s * 1e9)
    flow_start = np.asarray(flow_meta["start_ns"], dtype=np.int64)[flow_of_pair]
    flow_end = np.asarray(flow_meta["end_ns"], dtype=np.int64)[flow_of_pair]
    row_start = rows.start_ns[row_of_pair]
    row_end = row_start + rows.resolution_ns[row_of_pair]
    ok = (row_end + tolerance_ns > flow_start) & (row_start - tolerance_ns <= flow_end)
    flow_of_pair, row_of_pair = flow_of_pair[ok], row_of_pair[ok]
    middle = row_start[ok] + rows.resolution_ns[row_of_pair] // 2
    distance = np.abs(flow_start[ok] - middle)

    row_index = np.full(n, -1, dtype=np.int64)
    if len(flow_of_pair):
        best = np.lexsort((row_of_pair, distance, flow_of_pair))
        flows_sorted = flow_of_pair[best]
        first = np.r_[True, flows_sorted[1:] != flows_sorted[:-1]]
        row_index[flows_sorted[first]] = row_of_pair[best][first]
    names = np.where(row_index >= 0, rows.label[np.maximum(row_index, 0)], "")
    rows_matched = np.zeros(len(row_ids), dtype=bool)
    rows_matched[row_of_pair] = True

    starts = np.asarray(flow_meta["start_ns"], dtype=np.int64)
    ends = np.asarray(flow_meta["end_ns"], dtype=np.int64)
    in_span = np.zeros(len(row_ids), dtype=bool)
    if n:
        in_span = (rows.start_ns >= starts.min() - tolerance_ns) & (
            rows.start_ns <= ends.max() + tolerance_ns
        )
    conflicts = np.unique(flow_of_pair[rows.label[row_of_pair] != names[flow_of_pair]])
    labels, label_counts = np.unique(names[row_index >= 0], return_counts=True)
    report = {
        "rows": int(len(row_ids)),
        "rows_matched": int(rows_matched.sum()),
        "rows_unmatched": int((~rows_matched).sum()),
        "rows_inside_flow_time_span": int(in_span.sum()),
        "rows_inside_span_unmatched": int((in_span & ~rows_matched).sum()),
        "flows_matched": int((row_index >= 0).sum()),
        "flows_with_conflicting_rows": int(len(conflicts)),
        "duplicate_rows": rows.duplicate_rows,
        "flows_matched_per_label": dict(
            zip(labels.tolist(), label_counts.tolist(), strict=True)
        ),
        "tolerance_s": tolerance_s,
    }
    logging.info(
        "CIC matching: %d rows (%d inside the flows' time span), %d matched; "
        "%d of %d flows labelled",
        report["rows"],
        report["rows_inside_flow_time_span"],
        report["rows_matched"],
        report["flows_matched"],
        n,
    )
    return CicMatch(
        names=names.astype(str),
        row_index=row_index,
        rows_matched=rows_matched,
        report=report,
    )
