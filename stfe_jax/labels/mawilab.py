"""Reading MAWILab label files (CSV and admd XML) into anomalies with filters.

MAWILab publishes, per day of the MAWI samplepoint-F archive, two files in two
formats: ``YYYYMMDD_anomalous_suspicious`` and ``YYYYMMDD_notice``, each as ``.csv``
and as ``.xml`` (the admd annotation schema). An anomaly carries a MAWILab label
(anomalous, suspicious or notice), a taxonomy code (Mazel et al., TRAC 2014), and
one or more filters; a filter names any of source and destination address and
port, and a field left out is a wildcard. Only the XML gives time windows.

Traps handled here:

- The CSV header names ten columns (``anomalyID, srcIP, srcPort, dstIP, dstPort,
  taxonomy, heuristic, distance, nbDetectors, label``) but the rows of the
  anomalous/suspicious file carry nine (no ``heuristic``). Each row is read by its
  own shape: nine or ten fields; anything else is an error naming file and line.
- Notice files are reported to write nine fields too, but without ``anomalyID``
  (``srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, nbDetectors,
  label``). A nine-field row whose first field is not an integer is read so; each
  such row is one anomaly, numbered by its data row (0-based).
- Several CSV rows share one ``anomalyID``: they are the filters of one anomaly.
- In the XML, ``from``/``to`` carry ``sec`` and ``usec``; a ``sec`` of 0 or
  2147483645 means "not set". The window may sit on the anomaly (what MAWILab's
  own writer produces) or on a slice; a slice's own window wins for its filters.
- XML anomalies carry no id: the id is the anomaly's position in the file
  (0-based), the numbering the CSV of the same file uses.

The XML ``value`` attribute is ``"Dn,Da,C0,V,C1"``: distances of the anomaly to the
normal and anomalous reference points, the heuristic code, a detector summary and
the taxonomy code. Heuristic and taxonomy are taken from it; the distance and the
detector count, which the CSV gives directly, are left unset for XML input.
TODO: derive ``distance`` and ``nb_detectors`` from ``Dn,Da`` and ``V`` once a
real XML/CSV pair of one day is at hand to check the relation against.
"""

from __future__ import annotations

import csv
import dataclasses
import ipaddress
import pathlib
import xml.etree.ElementTree as ElementTree

from absl import logging

LABELS = ("notice", "suspicious", "anomalous")  # in rising severity
UNSET_SECONDS = (0, 2147483645)
CSV_HEADER_START = "anomalyid"

_PROTOCOL_NAMES = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "ipv6": 41, "icmpv6": 58}


class MawilabFormatError(ValueError):
    """A MAWILab file that does not read as the published CSV or admd XML."""


@dataclasses.dataclass(frozen=True)
class MawilabFilter:
    """One filter of an anomaly; ``None`` is a wildcard (or an unset time).

    Times are seconds since the Unix epoch (UTC); ``proto`` is an IP protocol
    number. ``src``/``dst`` are the anomaly's source and destination.
    """

    src_ip: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    proto: int | None = None
    t_from_s: float | None = None
    t_to_s: float | None = None

    @property
    def fields_set(self) -> int:
        """How many of the five traffic fields the filter sets."""
        values = (self.src_ip, self.src_port, self.dst_ip, self.dst_port, self.proto)
        return sum(value is not None for value in values)


@dataclasses.dataclass
class Anomaly:
    """One MAWILab anomaly: its label, classification and filters (any may match)."""

    anomaly_id: int
    label: str  # "anomalous" | "suspicious" | "notice"
    taxonomy: str | None
    heuristic: int | None
    distance: float | None
    nb_detectors: int | None
    filters: list[MawilabFilter]
    source: str = ""  # the file it was read from


def looks_like_mawilab(head: bytes) -> str | None:
    """``"xml"`` or ``"csv"`` when the first bytes of a file are a MAWILab file."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip().decode("utf-8", errors="replace")
    if text.startswith("<") and "annotation" in text[:2000]:
        return "xml"
    first_line = text.split("\n", 1)[0].replace(" ", "").lower()
    if first_line.startswith(CSV_HEADER_START + ",srcip"):
        return "csv"
    return None


def read_mawilab(path: str | pathlib.Path) -> list[Anomaly]:
    """The anomalies of one MAWILab file, CSV or XML, told apart by content."""
    path = pathlib.Path(path)
    with open(path, "rb") as file:
        head = file.read(4096)
    kind = looks_like_mawilab(head)
    if kind == "xml":
        anomalies = read_mawilab_xml(path)
    elif kind == "csv":
        anomalies = read_mawilab_csv(path)
    else:
        raise MawilabFormatError(
            f"{path}: line 1: expected a MAWILab CSV header starting "
            f"'anomalyID, srcIP' or an admd XML annotation, found {head[:60]!r}"
        )
    n_filters = sum(len(anomaly.filters) for anomaly in anomalies)
    logging.info(
        "MAWILab %s %s: %d anomalies, %d filters", kind, path, len(anomalies), n_filters
    )
    return anomalies


def _port(text: str, where: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        raise MawilabFormatError(f"{where}: expected a port, found {text!r}") from None
    if not 0 <= port <= 65535:
        raise MawilabFormatError(f"{where}: port {port} outside 0..65535")
    return port


def _address(text: str, where: str) -> str | None:
    text = text.strip()
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise MawilabFormatError(
            f"{where}: expected an IP address, found {text!r}"
        ) from None


def _label(text: str, where: str) -> str:
    label = text.strip().lower()
    if label not in LABELS:
        raise MawilabFormatError(
            f"{where}: expected a label in {LABELS}, found {text.strip()!r}"
        )
    return label


def _number(text: str, kind: type, where: str, name: str):
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise MawilabFormatError(
            f"{where}: expected {name} as {kind.__name__}, found {text!r}"
        ) from None


def read_mawilab_csv(path: str | pathlib.Path) -> list[Anomaly]:
    """Anomalies of a MAWILab CSV, rows read by their own shape (9 or 10 fields).

    Nine fields: ``anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, distance,
    nbDetectors, label``, or, when the first field is not an integer, the notice
    shape ``srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance,
    nbDetectors, label``; ten add ``heuristic`` after ``taxonomy`` as the header
    says. Rows sharing an ``anomalyID`` are filters of one anomaly and must agree
    on its label and classification.
    """
    path = pathlib.Path(path)
    anomalies: dict[int, Anomaly] = {}
    with open(path, newline="", encoding="utf-8-sig") as file:
        for line_number, row in enumerate(csv.reader(file), start=1):
            where = f"{path}: line {line_number}"
            if line_number == 1:
                if (
                    not "".join(row)
                    .replace(" ", "")
                    .lower()
                    .startswith(CSV_HEADER_START)
                ):
                    raise MawilabFormatError(
                        f"{where}: expected the header 'anomalyID, srcIP, ...', "
                        f"found {','.join(row)[:80]!r}"
                    )
                continue
            if not row or all(not field.strip() for field in row):
                continue
            if len(row) == 9 and row[0].strip().isdigit():
                anomaly_text, src, sport, dst, dport, taxonomy = row[:6]
                heuristic_text = ""
                distance_text, detectors_text, label_text = row[6:]
            elif len(row) == 9:
                # The notice shape: no anomalyID, heuristic kept; one anomaly a row.
                anomaly_text = str(line_number - 2)
                src, sport, dst, dport, taxonomy = row[:5]
                heuristic_text, distance_text, detectors_text, label_text = row[5:]
            elif len(row) == 10:
                anomaly_text, src, sport, dst, dport, taxonomy = row[:6]
                heuristic_text, distance_text, detectors_text, label_text = row[6:]
            else:
                raise MawilabFormatError(
                    f"{where}: expected 9 fields (no heuristic) or 10 fields, "
                    f"found {len(row)}: {','.join(row)[:80]!r}"
                )
            anomaly_id = _number(anomaly_text, int, where, "anomalyID")
            if anomaly_id is None:
                raise MawilabFormatError(f"{where}: empty anomalyID")
            anomaly = Anomaly(
                anomaly_id=anomaly_id,
                label=_label(label_text, where),
                taxonomy=taxonomy.strip() or None,
                heuristic=_number(heuristic_text, int, where, "heuristic"),
                distance=_number(distance_text, float, where, "distance"),
                nb_detectors=_number(detectors_text, int, where, "nbDetectors"),
                filters=[],
                source=str(path),
            )
            row_filter = MawilabFilter(
                src_ip=_address(src, where),
                src_port=_port(sport, where),
                dst_ip=_address(dst, where),
                dst_port=_port(dport, where),
            )
            known = anomalies.get(anomaly_id)
            if known is None:
                anomalies[anomaly_id] = anomaly
                known = anomaly
            elif (known.label, known.taxonomy) != (anomaly.label, anomaly.taxonomy):
                raise MawilabFormatError(
                    f"{where}: anomaly {anomaly_id} was {known.label}/"
                    f"{known.taxonomy} on an earlier line, here "
                    f"{anomaly.label}/{anomaly.taxonomy}"
                )
            known.filters.append(row_filter)
    return list(anomalies.values())


def _local(tag: str) -> str:
    """An element's name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def _timestamp(element: ElementTree.Element | None, where: str) -> float | None:
    if element is None:
        return None
    sec = _number(element.get("sec", ""), int, where, "sec")
    usec = _number(element.get("usec", ""), int, where, "usec") or 0
    if sec is None or sec in UNSET_SECONDS:
        return None
    return sec + usec / 1e6


def _window(element: ElementTree.Element, where: str) -> tuple[float | None, ...]:
    t_from = t_to = None
    for child in element:
        if _local(child.tag) == "from":
            t_from = _timestamp(child, where)
        elif _local(child.tag) == "to":
            t_to = _timestamp(child, where)
    return t_from, t_to


def _protocol(text: str | None, where: str) -> int | None:
    if text is None or not text.strip():
        return None
    text = text.strip().lower()
    if text in _PROTOCOL_NAMES:
        return _PROTOCOL_NAMES[text]
    number = _number(text, int, where, "proto")
    if not 0 <= number <= 255:
        raise MawilabFormatError(f"{where}: protocol {number} outside 0..255")
    return number


def _parse_value(value: str, where: str) -> tuple[int | None, str | None]:
    """Heuristic code and taxonomy from an anomaly's ``value="Dn,Da,C0,V,C1"``."""
    fields = [field.strip() for field in value.split(",")] if value else []
    heuristic = None
    if len(fields) >= 3 and fields[2]:
        heuristic = _number(fields[2], int, where, "heuristic code (value field 3)")
    taxonomy = fields[4] if len(fields) >= 5 and fields[4] else None
    return heuristic, taxonomy


def read_mawilab_xml(path: str | pathlib.Path) -> list[Anomaly]:
    """Anomalies of a MAWILab admd XML file, streamed anomaly by anomaly."""
    path = pathlib.Path(path)
    anomalies: list[Anomaly] = []
    try:
        for _, element in ElementTree.iterparse(path, events=("end",)):
            if _local(element.tag) != "anomaly":
                continue
            where = f"{path}: anomaly {len(anomalies)}"
            label = _label(element.get("type", ""), where + " type")
            heuristic, taxonomy = _parse_value(element.get("value", ""), where)
            anomaly_from, anomaly_to = _window(element, where)
            filters = []
            for slice_element in element:
                if _local(slice_element.tag) != "slice":
                    continue
                slice_from, slice_to = _window(slice_element, where)
                t_from = slice_from if slice_from is not None else anomaly_from
                t_to = slice_to if slice_to is not None else anomaly_to
                for filter_element in slice_element:
                    if _local(filter_element.tag) != "filter":
                        continue
                    get = filter_element.get
                    filters.append(
                        MawilabFilter(
                            src_ip=_address(get("src_ip", ""), where),
                            src_port=_port(get("src_port", ""), where),
                            dst_ip=_address(get("dst_ip", ""), where),
                            dst_port=_port(get("dst_port", ""), where),
                            proto=_protocol(get("proto"), where),
                            t_from_s=t_from,
                            t_to_s=t_to,
                        )
                    )
            if not filters:
                # Matching every packet of the window would mislabel whole hours;
                # an anomaly without a filter is kept but matches nothing.
                logging.warning("%s: anomaly without a filter matches nothing", where)
            anomalies.append(
                Anomaly(
                    anomaly_id=len(anomalies),
                    label=label,
                    taxonomy=taxonomy,
                    heuristic=heuristic,
                    distance=None,
                    nb_detectors=None,
                    filters=filters,
                    source=str(path),
                )
            )
            element.clear()
    except ElementTree.ParseError as error:
        line, column = error.position
        raise MawilabFormatError(
            f"{path}: line {line} column {column}: not well-formed admd XML ({error})"
        ) from None
    return anomalies
