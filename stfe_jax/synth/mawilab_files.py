"""Writers of label files in MAWILab's published formats (CSV and admd XML).

MAWILab publishes, per day, ``YYYYMMDD_anomalous_suspicious.{csv,xml}`` and
``YYYYMMDD_notice.{csv,xml}``. The shapes written here follow the published files:

* CSV header (both files): ``anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy,
  heuristic, distance, nbDetectors, label`` (ten names, comma and space).
  Rows of the anomalous/suspicious file carry nine fields, without ``heuristic``:
  ``anomalyID,srcIP,srcPort,dstIP,dstPort,taxonomy,distance,nbDetectors,label``,
  as in the real MAWILab v1.1 files of 2019-11-21 and 2020-11-10. Rows of the notice
  file carry nine fields without ``anomalyID``:
  ``srcIP,srcPort,dstIP,dstPort,taxonomy,heuristic,distance,nbDetectors,label``.
  Source for the notice shape: two independent public readers of MAWILab days
  (a polars reader and a pandas/DuckDB pipeline on GitHub) both parse notice rows
  with exactly these nine columns after skipping the header; no notice file is
  available here to check against. Empty fields are wildcards; an anomaly with
  several filters has several rows sharing its anomalyID.
* XML (admd): root ``admd:annotation`` (namespace ``http://www.nict.go.jp/admd``)
  with ``algorithm``, ``analysis`` and ``dataset`` elements, then one ``anomaly``
  element per anomaly with attributes ``type`` (anomalous, suspicious or notice)
  and ``value="Dn,Da,C0,V,C1"`` (distances to the normal and anomalous reference
  points, heuristic code, the 12 detector configurations as space-separated 0/1
  in the order Hough, Gamma, KL, PCA times sensitive, optimal, conservative, and
  the taxonomy code), a ``description``, a ``slice`` holding one ``filter`` per
  CSV row (attributes ``src_ip``, ``src_port``, ``dst_ip``, ``dst_port``,
  ``proto``; an unset field is left out), and ``from``/``to`` elements with
  ``sec``/``usec`` attributes after the slice. A time bound that is not set is
  written as sec 0 (from) or 2147483645 (to). Source: MAWILab's documentation
  page (fukuda-lab.org/mawilab/documentation.html) for the element layout and
  value fields, the generator script of MAWILab's author for the root element's
  namespace and the ``algorithm``/``analysis``/``dataset`` children, and the two
  public readers above for the order of the value fields and the filter
  attributes. TODO: no real MAWILab XML file was available to compare byte for
  byte; whether from/to sit beside the slice or inside it differs between the
  documentation's sketch and some readers (which search ``.//from``), and the
  detector flags' spelling (0/1) is inferred.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib
import xml.etree.ElementTree as ET

CSV_HEADER = (
    "anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, "
    "nbDetectors, label"
)
ADMD_NAMESPACE = "http://www.nict.go.jp/admd"
UNSET_FROM_SEC = 0
UNSET_TO_SEC = 2147483645
DETECTOR_CONFIGURATIONS = tuple(
    f"{detector}_{setting}"
    for detector in ("hough", "gamma", "kl", "pca")
    for setting in ("sensitive", "optimal", "conservative")
)
LABELS = ("anomalous", "suspicious", "notice")


@dataclasses.dataclass(frozen=True)
class LabelFilter:
    """One MAWILab filter: the traffic features an anomaly is reported on.

    None means the field is not set (a wildcard). ``proto`` is a protocol name as
    in the XML ("tcp", "udp", "icmp"); the CSV has no protocol column.
    """

    src_ip: str | None = None
    src_port: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    proto: str | None = None


@dataclasses.dataclass
class LabelledAnomaly:
    """One anomaly as MAWILab reports it, with what we know of how it was made.

    Attributes:
      anomaly_id: anomalyID in the anomalous/suspicious file, or the row order
        in the notice file.
      label: "anomalous", "suspicious" or "notice".
      kind: what the generator injected or chose, e.g. "syn_network_scan".
      taxonomy: MAWILab taxonomy code (Mazel et al. 2014), e.g. "ntscSYN".
      heuristic: MAWILab heuristic code (e.g. 10 SYN attack, 20 ping flood,
        503 HTTP traffic).
      filters: the filters, one CSV row each.
      start_ns, end_ns: time window of the anomaly's packets, ns since the Unix
        epoch; None where the label file leaves the bound unset.
      distance_normal, distance_anomalous: distances to the reference points.
      detectors: 12 booleans, the detector configurations that reported it.
      n_packets: packets of the capture that belong to it.
    """

    anomaly_id: int
    label: str
    kind: str
    taxonomy: str
    heuristic: int
    filters: list[LabelFilter]
    start_ns: int | None
    end_ns: int | None
    distance_normal: float
    distance_anomalous: float
    detectors: tuple[bool, ...]
    n_packets: int = 0

    @property
    def distance(self) -> float:
        """The CSV's distance: Dn - Da, positive when closer to the anomalous side."""
        return round(self.distance_normal - self.distance_anomalous, 5)

    @property
    def n_detectors(self) -> int:
        """How many detector configurations reported the anomaly."""
        return sum(self.detectors)


def _field(value) -> str:
    """A CSV field: empty for an unset value."""
    return "" if value is None else str(value)


def write_anomalous_suspicious_csv(
    path: pathlib.Path, anomalies: list[LabelledAnomaly]
) -> None:
    """Write ``YYYYMMDD_anomalous_suspicious.csv``: nine-field rows, ten-name header."""
    with open(path, "w", newline="") as stream:
        stream.write(CSV_HEADER + "\n")
        writer = csv.writer(stream, lineterminator="\n")
        for anomaly in anomalies:
            if anomaly.label not in ("anomalous", "suspicious"):
                raise ValueError(f"anomaly {anomaly.anomaly_id}: {anomaly.label!r}")
            for item in anomaly.filters:
                writer.writerow(
                    [
                        anomaly.anomaly_id,
                        _field(item.src_ip),
                        _field(item.src_port),
                        _field(item.dst_ip),
                        _field(item.dst_port),
                        anomaly.taxonomy,
                        anomaly.distance,
                        anomaly.n_detectors,
                        anomaly.label,
                    ]
                )


def write_notice_csv(path: pathlib.Path, anomalies: list[LabelledAnomaly]) -> None:
    """Write ``YYYYMMDD_notice.csv``: nine-field rows without anomalyID."""
    with open(path, "w", newline="") as stream:
        stream.write(CSV_HEADER + "\n")
        writer = csv.writer(stream, lineterminator="\n")
        for anomaly in anomalies:
            if anomaly.label != "notice":
                raise ValueError(f"anomaly {anomaly.anomaly_id}: {anomaly.label!r}")
            for item in anomaly.filters:
                writer.writerow(
                    [
                        _field(item.src_ip),
                        _field(item.src_port),
                        _field(item.dst_ip),
                        _field(item.dst_port),
                        anomaly.taxonomy,
                        anomaly.heuristic,
                        anomaly.distance,
                        anomaly.n_detectors,
                        anomaly.label,
                    ]
                )


def _time_attributes(
    ts_ns: int | None, unset_sec: int, *, round_up: bool
) -> dict[str, str]:
    """``sec``/``usec`` attributes of a from/to element (whole microseconds)."""
    if ts_ns is None:
        return {"sec": str(unset_sec), "usec": "0"}
    microseconds = -(-ts_ns // 1000) if round_up else ts_ns // 1000
    seconds, micro = divmod(microseconds, 1_000_000)
    return {"sec": str(seconds), "usec": str(micro)}


def write_admd_xml(
    path: pathlib.Path,
    anomalies: list[LabelledAnomaly],
    *,
    dataset_name: str,
    description: str,
) -> None:
    """Write one day's anomalies as an admd annotation (MAWILab's XML files).

    Args:
      path: the output file.
      anomalies: the anomalies, in the order of the matching CSV file.
      dataset_name: the capture the labels describe (file name).
      description: the analysis description (says the labels are synthetic).
    """
    root = ET.Element(
        "admd:annotation",
        {
            "xmlns:admd": ADMD_NAMESPACE,
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:schemaLocation": f"{ADMD_NAMESPACE} admd.xsd",
        },
    )
    algorithm = ET.SubElement(root, "algorithm")
    ET.SubElement(algorithm, "name").text = "stfe_jax synthetic MAWI-like day"
    ET.SubElement(algorithm, "version").text = "1"
    ET.SubElement(algorithm, "parameter").text = "labels of injected anomalies"
    analysis = ET.SubElement(root, "analysis")
    ET.SubElement(analysis, "description").text = description
    dataset = ET.SubElement(root, "dataset")
    ET.SubElement(dataset, "description").text = "synthetic MAWI-like trace"
    ET.SubElement(dataset, "name").text = dataset_name

    for anomaly in anomalies:
        flags = " ".join("1" if flag else "0" for flag in anomaly.detectors)
        value = ",".join(
            [
                f"{anomaly.distance_normal:.6f}",
                f"{anomaly.distance_anomalous:.6f}",
                str(anomaly.heuristic),
                flags,
                anomaly.taxonomy,
            ]
        )
        element = ET.SubElement(
            root, "anomaly", {"type": anomaly.label, "value": value}
        )
        reporting = [
            name
            for name, flag in zip(
                DETECTOR_CONFIGURATIONS, anomaly.detectors, strict=True
            )
            if flag
        ]
        ET.SubElement(element, "description").text = (
            "graph community { " + " -- ".join(f'"{name}"' for name in reporting) + " }"
        )
        slice_element = ET.SubElement(element, "slice")
        for item in anomaly.filters:
            attributes = {
                name: str(getattr(item, name))
                for name in ("src_ip", "src_port", "dst_ip", "dst_port", "proto")
                if getattr(item, name) is not None
            }
            ET.SubElement(slice_element, "filter", attributes)
        ET.SubElement(
            element,
            "from",
            _time_attributes(anomaly.start_ns, UNSET_FROM_SEC, round_up=False),
        )
        ET.SubElement(
            element, "to", _time_attributes(anomaly.end_ns, UNSET_TO_SEC, round_up=True)
        )

    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="UTF-8", xml_declaration=True)
