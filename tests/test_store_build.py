"""The flow store: shards and manifest, provenance, resuming an interrupted build,
refusing stores of another format or config, damaged captures, side data."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_flows_support import packet_batch, tcp_session, udp_frame

from stfe_jax.flows import FLOW_COLUMNS, SAMPLE_COLUMNS, cut_flows
from stfe_jax.store import (
    Store,
    StoreConfigMismatchError,
    StoreError,
    StoreFormatError,
    StoreIncompleteError,
    build,
    build_store,
)
from stfe_jax.synth.writers import write_pcap

T0 = 1_600_000_000 * 10**9
S = 10**9
REPO = pathlib.Path(__file__).resolve().parents[1]
ALL_COLUMNS = [*SAMPLE_COLUMNS, *FLOW_COLUMNS]


def capture_records(seed: int, n_sessions: int = 6) -> list[tuple[int, bytes]]:
    """TCP sessions and DNS-like UDP exchanges from distinct clients."""
    records = []
    for k in range(n_sessions):
        client = f"10.{seed}.0.{k + 1}"
        t = T0 + seed * 3600 * S + k * S
        records += tcp_session(client, "192.0.2.1", 40000 + k, 80, t)
        records.append((t + 5000, udp_frame(client, "192.0.2.53", 5000 + k, 53, b"q")))
        records.append((t + 9000, udp_frame("192.0.2.53", client, 53, 5000 + k, b"a")))
    return sorted(records, key=lambda r: r[0])


@pytest.fixture()
def captures(tmp_path) -> list[pathlib.Path]:
    paths = []
    for seed in range(3):
        path = tmp_path / "in" / f"cap{seed}.pcap"
        path.parent.mkdir(exist_ok=True)
        write_pcap(path, capture_records(seed, n_sessions=4 + seed))
        paths.append(path)
    return paths


def store_columns(store: Store) -> dict[str, np.ndarray]:
    return {name: store.column(name)[:] for name in ALL_COLUMNS}


def comparable_records(store: Store) -> list[dict]:
    """Capture records without the build's timing."""
    return [
        {k: v for k, v in record.items() if k != "seconds"}
        for record in store.manifest["captures"]
    ]


def test_store_holds_the_flows_of_every_capture_in_order(captures, tmp_path):
    store = build_store(captures, tmp_path / "store", {}, shard_flows=4)
    expected = [
        list(cut_flows([packet_batch(capture_records(s, 4 + s))], {}, capture_index=s))
        for s in range(3)
    ]
    flows = [f for per_capture in expected for f in per_capture]
    assert store.num_flows == sum(len(f) for f in flows) == 2 * (4 + 5 + 6)
    for name in ALL_COLUMNS:
        want = np.concatenate([getattr(f, name) for f in flows])
        np.testing.assert_array_equal(store.column(name)[:], want, name)
    assert store.captures == [str(p.resolve()) for p in captures]
    assert store.column("packets").shape == (30, 8, 100)
    assert store.column("packets").dtype == np.uint8


def test_manifest_records_provenance_config_and_columns(captures, tmp_path):
    config = {"packets_per_flow": 4, "bytes_per_packet": 60, "mask_ttl": True}
    store = build_store(captures, tmp_path / "store", config, shard_flows=5)
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["flows_config"]["bytes_per_packet"] == 60
    assert manifest["flows_config"]["mask_ttl"] is True
    assert manifest["columns"]["packets"] == {"dtype": "uint8", "shape": [4, 60]}
    record = manifest["captures"][2]
    assert record["sha256"] == hashlib.sha256(captures[2].read_bytes()).hexdigest()
    assert record["size"] == captures[2].stat().st_size
    assert record["packets_read"] == 6 * 10
    assert record["flows_written"] == 12
    assert [s["num_flows"] for s in record["shards"]] == [5, 5, 2]
    assert record["stats"]["flows_by_end_reason"]["fin"] == 6
    assert record["error"] is None and record["capture_format"] == "pcap"
    assert store.column("packets").shape == (2 * 15, 4, 60)


def test_column_indexing_spans_shards(captures, tmp_path):
    store = build_store(captures, tmp_path / "store", {}, shard_flows=3)
    column = store.column("start_ns")
    everything = column[:]
    index = np.array([29, 0, 4, 3, 17, 4])
    np.testing.assert_array_equal(column[index], everything[index])
    np.testing.assert_array_equal(column[2:11], everything[2:11])
    np.testing.assert_array_equal(column[::7], everything[::7])
    mask = everything % 2 == 0
    np.testing.assert_array_equal(column[mask], everything[mask])
    assert column[-1] == everything[-1] and len(column) == 30
    packets = store.column("packets")
    assert packets[index].shape == (6, 8, 100)
    np.testing.assert_array_equal(packets[[5]][0], packets[5])
    with pytest.raises(IndexError):
        column[np.array([30])]
    full = packets[:]
    np.testing.assert_array_equal(packets[index, 0], full[index, 0])
    np.testing.assert_array_equal(packets[3, 1:3, 5], full[3, 1:3, 5])


def test_interrupted_build_resumes_to_the_same_store(captures, tmp_path, monkeypatch):
    unbroken = build_store(captures, tmp_path / "unbroken", {}, shard_flows=4)

    # Fail while the second capture is being written.
    real_write = build._ShardWriter._write
    calls = []

    def failing_write(self, count):
        calls.append(self.folder.name)
        if self.folder.name.startswith("c00001") and len(calls) > 4:
            raise RuntimeError("disk full (injected)")
        real_write(self, count)

    monkeypatch.setattr(build._ShardWriter, "_write", failing_write)
    with pytest.raises(RuntimeError, match="injected"):
        build_store(captures, tmp_path / "store", {}, shard_flows=4)
    with pytest.raises(StoreIncompleteError, match="never finished"):
        Store.open(tmp_path / "store")
    assert (tmp_path / "store/captures/c00000/done.json").exists()
    assert (tmp_path / "store/captures/c00001.partial").exists()
    monkeypatch.setattr(build._ShardWriter, "_write", real_write)

    built = []
    real_build_capture = build.build_capture
    monkeypatch.setattr(
        build,
        "build_capture",
        lambda index, *a: built.append(index) or real_build_capture(index, *a),
    )
    resumed = build_store(captures, tmp_path / "store", {}, shard_flows=4)
    assert built == [1, 2]  # the finished first capture was kept
    assert not (tmp_path / "store/captures/c00001.partial").exists()
    assert comparable_records(resumed) == comparable_records(unbroken)
    for name, values in store_columns(unbroken).items():
        np.testing.assert_array_equal(store_columns(resumed)[name], values, name)

    built.clear()
    again = build_store(captures, tmp_path / "store", {}, shard_flows=4)
    assert built == [] and again.num_flows == unbroken.num_flows


def test_process_killed_while_writing_the_manifest_leaves_no_complete_store(
    captures, tmp_path
):
    store_dir = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import os, signal
        from stfe_jax.store import build_store, layout
        real = layout.write_json_atomic
        def killing(path, obj):
            if path.name == "manifest.json":
                path.with_name(".manifest.json.partial.tmp").write_text("{{")
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, obj)
        layout.write_json_atomic = killing
        build_store({[str(p) for p in captures]!r}, {str(store_dir)!r}, {{}})
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert not (store_dir / "manifest.json").exists()
    with pytest.raises(StoreIncompleteError):
        Store.open(store_dir)
    assert (store_dir / ".manifest.json.partial.tmp").exists()
    resumed = build_store(captures, store_dir, {})
    assert not list(store_dir.glob(".manifest.json.*"))
    unbroken = build_store(captures, tmp_path / "unbroken", {})
    assert comparable_records(resumed) == comparable_records(unbroken)
    np.testing.assert_array_equal(
        resumed.column("packets")[:], unbroken.column("packets")[:]
    )


def test_store_of_another_config_is_refused_with_the_difference(captures, tmp_path):
    build_store(captures, tmp_path / "store", {"bytes_per_packet": 64})
    with pytest.raises(StoreConfigMismatchError, match="bytes_per_packet.*64.*100"):
        Store.open(tmp_path / "store", expect_flows_config={})
    with pytest.raises(StoreConfigMismatchError, match="mask_ttl"):
        build_store(
            captures, tmp_path / "store", {"bytes_per_packet": 64, "mask_ttl": 1}
        )
    store = Store.open(tmp_path / "store", expect_flows_config={"bytes_per_packet": 64})
    assert store.options.bytes_per_packet == 64


def test_missing_store_directory_is_named(tmp_path):
    with pytest.raises(StoreError, match="no such store directory"):
        Store.open(tmp_path / "nowhere")


def test_store_of_another_format_version_is_refused(captures, tmp_path):
    build_store(captures, tmp_path / "store", {})
    path = tmp_path / "store" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(StoreFormatError, match="version 99"):
        Store.open(tmp_path / "store")


def test_shard_that_disagrees_with_the_manifest_is_refused(captures, tmp_path):
    store = build_store(captures, tmp_path / "store", {}, shard_flows=4)
    shard = tmp_path / "store/captures/c00001/s00000/iat_s.npy"
    np.save(shard, np.zeros((4, 3), np.float32))
    with pytest.raises(StoreFormatError, match="iat_s.npy"):
        Store.open(store.store_dir).column("iat_s")


def test_capture_damaged_part_way_keeps_the_flows_read_before(tmp_path):
    records = capture_records(0, n_sessions=6)
    path = tmp_path / "damaged.pcap"
    write_pcap(path, records)
    data = bytearray(path.read_bytes())
    # Make record 40's captured length impossible (its header starts after the
    # 24-byte file header and the 40 records before it).
    offset = 24 + sum(16 + len(frame) for _, frame in records[:40])
    data[offset + 8 : offset + 12] = (0x7FFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    not_a_capture = tmp_path / "notes.pcap"
    not_a_capture.write_bytes(b"this is not a capture file at all")

    store = build_store([path, not_a_capture], tmp_path / "store", {})
    damaged, unreadable = store.manifest["captures"]
    assert damaged["packets_read"] == 40
    assert str(offset) in damaged["error"]
    assert damaged["flows_written"] > 0
    assert store.column("packet_count")[:].sum() == 40
    assert unreadable["flows_written"] == 0
    assert unreadable["error"].startswith("CaptureFormatError")
    assert store.num_flows == damaged["flows_written"]


def test_side_arrays_and_documents_round_trip_and_are_checked(captures, tmp_path):
    store = build_store(captures, tmp_path / "store", {})
    labels = np.arange(store.num_flows, dtype=np.int32) % 3
    store.write_side_array("label", labels)
    store.write_side_json("label_report", {"unmatched": 2})
    reopened = Store.open(tmp_path / "store")
    np.testing.assert_array_equal(reopened.read_side_array("label"), labels)
    assert reopened.read_side_json("label_report") == {"unmatched": 2}
    with pytest.raises(ValueError, match="one per flow"):
        store.write_side_array("label", labels[:-1])
    with pytest.raises(TypeError):
        store.write_side_array("names", np.array(["a"] * store.num_flows, dtype=object))
    with pytest.raises(ValueError, match="side data name"):
        store.write_side_array("../escape", labels)
    with pytest.raises(KeyError):
        reopened.read_side_array("split")
    leftovers = [p.name for p in (tmp_path / "store/side").iterdir()]
    assert sorted(leftovers) == ["label.npy", "label_report.json"]


def test_parallel_workers_build_the_same_store(captures, tmp_path):
    serial = build_store(captures, tmp_path / "serial", {}, shard_flows=4)
    parallel = build_store(
        captures, tmp_path / "parallel", {}, shard_flows=4, workers=2
    )
    assert comparable_records(parallel) == comparable_records(serial)
    np.testing.assert_array_equal(
        parallel.column("packets")[:], serial.column("packets")[:]
    )


def test_rebuild_with_another_capture_list_keeps_matching_captures(captures, tmp_path):
    build_store(captures[:2], tmp_path / "store", {})
    store = build_store(captures, tmp_path / "store", {})
    assert len(store.captures) == 3
    assert store.num_flows == 30
    os.utime(captures[0], ns=(1, 1))  # a changed file is read again
    store = build_store(captures, tmp_path / "store", {})
    assert store.manifest["captures"][0]["mtime_ns"] == 1


def test_reader_warnings_reach_the_manifest(tmp_path):
    # A link type the reader does not decode: packets read, none cut into flows.
    path = tmp_path / "userlink.pcap"
    write_pcap(path, [(T0 + k, bytes(60)) for k in range(5)], link_type=147)
    store = build_store([path], tmp_path / "store", {})
    record = store.manifest["captures"][0]
    assert record["packets_read"] == 5 and record["flows_written"] == 0
    assert any("147" in warning for warning in record["warnings"])
    assert record["stats"]["non_ip_skipped"] == 5
    assert record["link_types"] == {"147": 5}
