"""Per-capture classes from a manifest CSV: exact paths, globs, the real corpus."""

import collections

import numpy as np
import pytest

from stfe_jax.labels import LabelSourceError, detect_kind, label_flows
from stfe_jax.labels.per_capture import ManifestError, capture_classes


def flows_of(capture_index):
    n = len(capture_index)
    return {
        "start_ns": np.arange(n, dtype=np.int64),
        "end_ns": np.arange(n, dtype=np.int64) + 1,
        "protocol": np.full(n, 6, np.uint8),
        "src_addr": np.zeros((n, 16), np.uint8),
        "dst_addr": np.zeros((n, 16), np.uint8),
        "src_port": np.zeros(n, np.uint16),
        "dst_port": np.zeros(n, np.uint16),
        "capture_index": np.asarray(capture_index, np.int32),
    }


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "labels").mkdir()
    path = tmp_path / "labels" / "classes.csv"
    path.write_text(
        "capture,class,source\n"
        "../caps/web.pcap,normal,suite-a\n"
        "../caps/scan-*.pcap,scan,suite-b\n"
        "../caps/scan-special.pcap,dos,suite-b\n"
        "../caps/nothing-*.pcapng,malware,suite-c\n"
    )
    return path


def test_exact_rows_beat_globs_and_paths_are_relative(tmp_path, manifest):
    caps = tmp_path / "caps"
    paths = [
        str(caps / n)
        for n in ("web.pcap", "scan-1.pcap", "scan-special.pcap", "other.pcap")
    ]
    classes = capture_classes(manifest, paths)
    assert classes.labels == ["normal", "scan", "dos", ""]
    assert classes.rows_matching_nothing == 1  # the nothing-* glob

    flows = flows_of([0, 0, 1, 2, 3, 1])
    result = label_flows(flows, paths, [str(manifest)], {"policy": "family"})
    # Names that are MAWILab families come first, in family order; then the rest.
    assert result.class_names == ["normal", "scan", "dos"]
    assert result.class_id.tolist() == [0, 0, 1, 2, -1, 1]
    binary = label_flows(flows, paths, [str(manifest)], {"policy": "binary"})
    assert binary.class_id.tolist() == [0, 0, 1, 1, -1, 1]
    report = binary.report["capture_classes"][str(manifest)]
    assert report == {
        "captures_labelled": 3,
        "captures_unlabelled": 1,
        "rows_matching_nothing": 1,
        "flows_matched": 5,
    }
    defaulted = label_flows(
        flows, paths, [str(manifest)], {"policy": "binary", "default_class": "normal"}
    )
    assert defaulted.class_id.tolist() == [0, 0, 1, 1, 0, 1]


def test_no_label_files_needs_a_default():
    flows = flows_of([0, 0])
    with pytest.raises(LabelSourceError, match="no label files"):
        label_flows(flows, ["a.pcap"], [], {"policy": "binary"})
    result = label_flows(flows, ["a.pcap"], [], {"default_class": "normal"})
    assert result.class_id.tolist() == [0, 0]
    assert result.class_names == ["normal", "anomalous"]


def test_bad_manifest_and_unknown_file(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("capture,class\na.pcap,normal\nb.pcap\n")
    with pytest.raises(ManifestError, match=r"m\.csv: line 3: expected 2 fields"):
        capture_classes(path, [])
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(LabelSourceError, match=r"notes\.txt: line 1: expected"):
        detect_kind(other)


def test_real_capture_corpus(shared_dir):
    manifest = shared_dir / "datasets" / "capture-corpus" / "labels.csv"
    assert detect_kind(manifest) == "capture_classes"
    captures = sorted((shared_dir / "captures").rglob("*"))
    captures = [str(p) for p in captures if p.is_file() and p.suffix != ".tsv"]
    classes = capture_classes(manifest, captures)
    # The dataset README's class counts: files named by the manifest, per class.
    counts = collections.Counter(label for label in classes.labels if label)
    assert counts == {
        "normal": 2206,
        "exploit": 78,
        "other-attack": 38,
        "scan": 33,
        "malware": 20,
        "dos": 15,
        "tunnel": 4,
        "bruteforce": 3,
    }
    assert classes.rows_matching_nothing == 0
