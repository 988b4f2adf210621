"""Labels: a class per flow from MAWILab files, CIC flow CSVs or per-capture classes.

``label_flows`` is the entry point. It tells each label file's kind from its
content (MAWILab CSV or admd XML, CICFlowMeter CSV, per-capture manifest CSV),
matches flows against every source, and applies the label policy
(``labels.policy`` ``binary`` or ``family``; ``labels.suspicious``), see
``policy``; with MAWILab files the family policy always lists every family, so
class ids do not change from day to day.

When several sources label one flow, MAWILab wins over a CIC CSV, which wins over
a per-capture class. MAWILab labels every flow (a flow no anomaly matches is
benign); CIC rows and manifests leave flows they do not name unlabelled (class
-1) unless ``labels.default_class`` names a class for them. With no label file at
all, labelling is refused unless ``labels.default_class`` is set: a data set
silently labelled all-normal trains a detector that never fires. Given both the
XML and the CSV of one MAWILab file, only the XML is read (it has time windows).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from stfe_jax.labels import cic, matching, mawilab, per_capture, policy

KINDS = ("mawilab_csv", "mawilab_xml", "cic_csv", "capture_classes")


class LabelSourceError(ValueError):
    """A label file of unknown kind, or a labelling request that cannot be met."""


@dataclasses.dataclass
class LabelResult:
    """Labels of ``n`` flows.

    Attributes:
      class_id: int32 (n,), index into ``class_names``; -1 dropped or unlabelled.
      class_names: class names; class 0 is the normal class.
      side: per-flow extras: ``mawilab_label`` (int8: 0 benign, 1 notice,
        2 suspicious, 3 anomalous), ``anomaly_id`` (int64, MAWILab id of the
        winning anomaly, -1), ``anomaly_file`` (int16, index into
        ``report["mawilab"]["files"]``, -1), ``taxonomy`` (str), ``cic_row``
        (int64 row of the CIC CSV, -1), ``source_name`` (str, the label name
        before the policy), and ``other_anomalies`` (JSON-able: flow index as
        text -> list of ``[file index, anomaly id]``).
      report: per label source, flows matched and labels that matched nothing;
        the policy and the flow count per class.
    """

    class_id: np.ndarray
    class_names: list[str]
    side: dict[str, Any]
    report: dict[str, Any]


def detect_kind(path: str | pathlib.Path) -> str:
    """The kind of a label file (one of ``KINDS``), read from its first bytes."""
    with open(path, "rb") as file:
        head = file.read(8192)
    found = mawilab.looks_like_mawilab(head)
    if found is not None:
        return f"mawilab_{found}"
    if cic.looks_like_cic(head):
        return "cic_csv"
    if per_capture.looks_like_manifest(head):
        return "capture_classes"
    first_line = head.split(b"\n", 1)[0][:100]
    raise LabelSourceError(
        f"{path}: line 1: expected a MAWILab CSV/XML, a CICFlowMeter CSV (Label, "
        f"Timestamp, 5-tuple) or a manifest (capture, class); found {first_line!r}"
    )


def _setting(config, name: str, default):
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(name, default)
    return config.get(name, default) if hasattr(config, "get") else default


def _drop_superseded_csvs(
    paths: list[tuple[str, str]],
) -> tuple[list[str], list[str]]:
    """MAWILab paths without the CSVs whose same-stem XML is also given."""
    xml_stems = {
        pathlib.Path(p).with_suffix("") for p, k in paths if k == "mawilab_xml"
    }
    kept, dropped = [], []
    for path, kind in paths:
        if kind == "mawilab_csv" and pathlib.Path(path).with_suffix("") in xml_stems:
            dropped.append(path)
        else:
            kept.append(path)
    return kept, dropped


def _label_mawilab(flow_meta, files, family: bool, n: int, side, report):
    anomalies: list[mawilab.Anomaly] = []
    file_of = []
    for index, path in enumerate(files):
        read = mawilab.read_mawilab(path)
        anomalies.extend(read)
        file_of.extend([index] * len(read))
    match = matching.match_flows(flow_meta, anomalies)

    winner = match.anomaly_index
    has = winner >= 0
    safe = np.maximum(winner, 0)
    ids = np.array([a.anomaly_id for a in anomalies] or [0], dtype=np.int64)
    file_index = np.array(file_of or [0], dtype=np.int16)
    taxonomy = np.array([a.taxonomy or "" for a in anomalies] or [""], dtype=str)
    families = np.array(
        [policy.taxonomy_family(a.taxonomy) for a in anomalies] or ["other"], dtype=str
    )
    side["mawilab_label"] = match.label_code
    side["anomaly_id"] = np.where(has, ids[safe], -1)
    side["anomaly_file"] = np.where(has, file_index[safe], -1).astype(np.int16)
    side["taxonomy"] = np.where(has, taxonomy[safe], "")
    side["other_anomalies"] = {
        str(flow): [[int(file_of[a]), int(anomalies[a].anomaly_id)] for a in others]
        for flow, others in match.other_anomalies.items()
    }

    attack = match.label_code >= 2
    names = np.full(n, policy.NORMAL, dtype=object)
    names[attack] = families[safe][attack] if family else "anomalous"
    code_names = {code: name for name, code in matching.LABEL_CODES.items()}
    per_label = np.bincount(match.label_code, minlength=4)
    anomalies_per_label = {
        label: sum(a.label == label for a in anomalies) for label in mawilab.LABELS
    }
    report["mawilab"] = {
        "files": [str(p) for p in files],
        "anomalies": len(anomalies),
        "anomalies_per_label": anomalies_per_label,
        "filters": sum(len(a.filters) for a in anomalies),
        "anomalies_matching_nothing": int((match.flows_per_anomaly == 0).sum()),
        "filters_matching_nothing": match.filters_matching_nothing,
        "flows_matched": int(has.sum()),
        "flows_per_mawilab_label": {code_names[c]: int(per_label[c]) for c in range(4)},
        "flows_with_several_anomalies": len(match.other_anomalies),
        "time_windows": any(
            f.t_from_s is not None or f.t_to_s is not None
            for a in anomalies
            for f in a.filters
        ),
    }
    if not report["mawilab"]["time_windows"]:
        logging.warning(
            "MAWILab labels without time windows (CSV only): every flow of the "
            "filters' hosts matches at any time of day, which marks too much; "
            "prefer the XML files"
        )
    return names.astype(str), match.label_code == 2


def label_flows(
    flow_meta: Mapping[str, np.ndarray],
    capture_paths: Sequence[str],
    label_paths: Sequence[str],
    labels_config=None,
) -> LabelResult:
    """Label every flow from the given label files and apply the label policy.

    Args:
      flow_meta: per-flow columns named as ``stfe_jax.flows.columns.FLOW_COLUMNS``
        (``start_ns``/``end_ns`` in ns since the epoch, ``src_addr``/``dst_addr``
        (n, 16) uint8, ports, ``protocol``, ``capture_index``, and the packet
        counts when present).
      capture_paths: the capture files, index = ``capture_index``.
      label_paths: label files of any supported kind, detected by content.
      labels_config: the ``labels`` config section: ``policy`` ("binary" or
        "family"), ``suspicious`` ("anomalous", "drop", "separate"),
        ``cic_timezone`` (UTC offset, default "-03:00"), optional
        ``cic_tolerance_s`` (seconds, default 2.0) and ``default_class`` (class
        name for flows no source labels; default none).
    """
    n = len(np.asarray(flow_meta["start_ns"]))
    chosen = _setting(labels_config, "policy", "binary")
    chosen = {"multiclass": "family", "taxonomy": "family"}.get(chosen, chosen)
    label_policy = policy.LabelPolicy(
        policy=chosen, suspicious=_setting(labels_config, "suspicious", "anomalous")
    )
    default_class = _setting(labels_config, "default_class", None)
    if not label_paths and not default_class:
        raise LabelSourceError(
            "no label files given and no labels.default_class: refusing to label "
            f"all {n} flows as one class; pass MAWILab, CIC or manifest files"
        )

    kinds = [(str(path), detect_kind(path)) for path in label_paths]
    mawilab_files, superseded = _drop_superseded_csvs(
        [(p, k) for p, k in kinds if k.startswith("mawilab")]
    )
    report: dict[str, Any] = {
        "policy": label_policy.describe(),
        "label_files": {path: kind for path, kind in kinds},
    }
    if superseded:
        report["mawilab_csv_superseded_by_xml"] = superseded
    side: dict[str, Any] = {}
    names = np.full(n, "", dtype=object)
    suspicious = np.zeros(n, dtype=bool)

    manifests = [p for p, k in kinds if k == "capture_classes"]
    for path in manifests:
        classes = per_capture.capture_classes(path, capture_paths)
        from_manifest = per_capture.flow_names(flow_meta["capture_index"], classes)
        fill = (names == "") & (from_manifest != "")
        names[fill] = from_manifest[fill]
        report.setdefault("capture_classes", {})[path] = {
            "captures_labelled": sum(label != "" for label in classes.labels),
            "captures_unlabelled": sum(label == "" for label in classes.labels),
            "rows_matching_nothing": classes.rows_matching_nothing,
            "flows_matched": int((from_manifest != "").sum()),
        }

    cic_paths = [p for p, k in kinds if k == "cic_csv"]
    cic_row = np.full(n, -1, dtype=np.int64)
    for path in cic_paths:
        rows = cic.read_cic_csv(path, _setting(labels_config, "cic_timezone", "-03:00"))
        found = cic.match_cic(
            flow_meta, rows, _setting(labels_config, "cic_tolerance_s", 2.0)
        )
        hit = found.row_index >= 0
        names[hit] = found.names[hit]
        cic_row[hit] = found.row_index[hit]
        report.setdefault("cic", {})[path] = found.report
    if cic_paths:
        side["cic_row"] = cic_row

    if mawilab_files:
        mawilab_names, suspicious = _label_mawilab(
            flow_meta, mawilab_files, label_policy.policy == "family", n, side, report
        )
        names[:] = mawilab_names

    unlabelled = names == ""
    if default_class:
        names[unlabelled] = default_class
    names = names.astype(str)
    class_id, class_names = policy.assign_classes(
        label_policy, names, suspicious, all_families=bool(mawilab_files)
    )
    side["source_name"] = names
    counts = np.bincount(class_id[class_id >= 0], minlength=len(class_names))
    report["flows"] = n
    report["flows_unlabelled_before_default"] = int(unlabelled.sum())
    report["flows_dropped_or_unlabelled"] = int((class_id < 0).sum())
    report["class_names"] = class_names
    report["flows_per_class"] = {
        name: int(count) for name, count in zip(class_names, counts, strict=True)
    }
    logging.info(
        "labels: %d flows, classes %s, %d dropped or unlabelled",
        n,
        report["flows_per_class"],
        report["flows_dropped_or_unlabelled"],
    )
    return LabelResult(
        class_id=class_id, class_names=class_names, side=side, report=report
    )
