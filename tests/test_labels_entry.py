"""label_flows: kinds told by content, sources combined, reports that serialise."""

import json

import ml_collections
import numpy as np

from stfe_jax.labels import detect_kind, label_flows
from stfe_jax.labels.addresses import address_row

T0 = 1593579600
MAWILAB_CSV = (
    "anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, "
    "nbDetectors, label\n0,10.0.0.1,,,,ntscSYN,0.5,3,anomalous\n"
    "1,10.0.0.2,,,,mptp,0.5,3,suspicious\n"
)


def flows(pairs, capture_index):
    def rows(i):
        return np.array([np.frombuffer(address_row(p[i]), np.uint8) for p in pairs])

    n = len(pairs)
    return {
        "start_ns": np.full(n, T0 * 10**9, np.int64),
        "end_ns": np.full(n, (T0 + 1) * 10**9, np.int64),
        "protocol": np.full(n, 6, np.uint8),
        "src_addr": rows(0).reshape(n, 16),
        "dst_addr": rows(1).reshape(n, 16),
        "src_port": np.full(n, 1000, np.uint16),
        "dst_port": np.full(n, 80, np.uint16),
        "packet_count": np.full(n, 2, np.int64),
        "fwd_packet_count": np.ones(n, np.int64),
        "capture_index": np.asarray(capture_index, np.int32),
    }


def test_mawilab_wins_over_capture_classes(tmp_path):
    labels = tmp_path / "20200701_anomalous_suspicious.csv"
    labels.write_text(MAWILAB_CSV)
    manifest = tmp_path / "classes.csv"
    manifest.write_text("capture,class\na.pcap,dos\nb.pcap,normal\n")
    assert detect_kind(labels) == "mawilab_csv"
    assert detect_kind(manifest) == "capture_classes"

    meta = flows(
        [("10.0.0.1", "10.0.0.9"), ("10.0.0.2", "10.0.0.9"), ("10.0.0.3", "10.0.0.9")],
        [0, 1, 1],
    )
    config = ml_collections.ConfigDict(
        {"policy": "binary", "suspicious": "separate", "cic_timezone": "-03:00"}
    )
    result = label_flows(
        meta, [str(tmp_path / "a.pcap"), str(tmp_path / "b.pcap")],
        [str(manifest), str(labels)], config,
    )  # fmt: skip
    # MAWILab labels every flow: f2 is benign although its capture says nothing
    # else, and f0 is the scan although its capture is labelled dos.
    assert result.class_names == ["normal", "anomalous", "suspicious"]
    assert result.class_id.tolist() == [1, 2, 0]
    assert result.side["source_name"].tolist() == ["anomalous", "anomalous", "normal"]
    json.dumps(result.report)
    json.dumps(result.side["other_anomalies"])
    assert result.report["capture_classes"][str(manifest)]["flows_matched"] == 3


def test_no_flows(tmp_path):
    labels = tmp_path / "20200701_anomalous_suspicious.csv"
    labels.write_text(MAWILAB_CSV)
    meta = flows([("10.0.0.1", "10.0.0.9")], [0])
    empty = {name: column[:0] for name, column in meta.items()}
    result = label_flows(empty, ["a.pcap"], [str(labels)], {"policy": "family"})
    assert result.class_id.shape == (0,)
    assert result.report["mawilab"]["anomalies_matching_nothing"] == 2
    # Every family stays a class, so ids match those of any other MAWILab day.
    assert result.class_names == [
        "normal", "scan", "dos_flood", "alpha_heavy_hitter", "tunnel", "other"
    ]  # fmt: skip
