"""Cluster preprocessing on a Dask LocalCluster of 2 worker processes, checked
against the single-process ``build_store``: same arrays byte for byte, failures
recorded while the other captures go on, a killed worker survived, no work redone.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal

import distributed
import numpy as np
import psutil
import pytest

from stfe_jax import configs
from stfe_jax.distributed import (
    CaptureJob,
    build_capture_shards,
    cluster_client,
    preprocess_captures,
)
from stfe_jax.store import Store, build_store
from stfe_jax.synth import packets, writers

pytestmark = pytest.mark.timeout(300)

NUM_CAPTURES = 4
SHARD_FLOWS = 50  # small, so that captures span several shards


def _tcp_packet(ts_ns, client, server, sport, dport, flags, payload=b""):
    segment = packets.tcp(
        src_port=sport,
        dst_port=dport,
        flags=flags,
        payload=payload,
        src_ip=client,
        dst_ip=server,
    )
    ip = packets.ipv4(segment, src=client, dst=server, protocol=packets.IPPROTO_TCP)
    return ts_ns, packets.ethernet(ip, ethertype=packets.ETHERTYPE_IPV4)


def _udp_packet(ts_ns, src, dst, sport, dport, payload):
    datagram = packets.udp(
        src_port=sport, dst_port=dport, payload=payload, src_ip=src, dst_ip=dst
    )
    ip = packets.ipv4(datagram, src=src, dst=dst, protocol=packets.IPPROTO_UDP)
    return ts_ns, packets.ethernet(ip, ethertype=packets.ETHERTYPE_IPV4)


def _write_capture(path: pathlib.Path, seed: int, num_flows: int) -> None:
    """A capture of interleaved TCP and UDP flows, some of which continue across
    the whole file (so a capture boundary would split them if flows spanned
    captures)."""
    rng = np.random.default_rng(seed)
    records = []
    base_ns = 1_600_000_000_000_000_000 + seed * 10_000_000_000
    for flow in range(num_flows):
        client = f"10.{seed}.{flow // 200}.{flow % 200 + 1}"
        server = f"192.0.2.{flow % 50 + 1}"
        sport = 1024 + flow
        start = base_ns + int(rng.integers(0, 5_000_000_000))
        if flow % 3 == 2:
            for k in range(int(rng.integers(1, 6))):
                payload = rng.bytes(int(rng.integers(4, 60)))
                records.append(
                    _udp_packet(
                        start + k * 1_000_000, client, server, sport, 53, payload
                    )
                )
            continue
        steps = [("S", b""), ("SA", b""), ("A", b"")]
        steps += [("PA", rng.bytes(int(rng.integers(1, 80)))) for _ in range(3)]
        steps += [("FA", b""), ("FA", b""), ("A", b"")]
        for k, (flags, payload) in enumerate(steps[: int(rng.integers(2, 10))]):
            ts = start + k * 2_000_000
            if k % 2:
                records.append(
                    _tcp_packet(ts, server, client, 80, sport, flags, payload)
                )
            else:
                records.append(
                    _tcp_packet(ts, client, server, sport, 80, flags, payload)
                )
    records.sort(key=lambda record: record[0])
    writers.write_pcap(path, records)


@pytest.fixture(scope="module")
def flows_config():
    return configs.get_config("cnn_lstm", tiny=True).flows


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("captures")
    paths = []
    for i in range(NUM_CAPTURES):
        # Names out of index order: the cluster build sorts them by path.
        path = folder / f"day{(i * 3) % NUM_CAPTURES}.pcap"
        _write_capture(path, seed=i, num_flows=120 + 40 * i)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def reference(captures, flows_config, tmp_path_factory) -> Store:
    store_dir = tmp_path_factory.mktemp("reference") / "store"
    return build_store(
        sorted(captures), store_dir, flows_config, shard_flows=SHARD_FLOWS
    )


@pytest.fixture(scope="module")
def client():
    with cluster_client(workers=2) as client:
        yield client


def _assert_same_arrays(store: Store, expected: Store, keep=None) -> None:
    """Every column of ``store`` equals ``expected``'s (rows ``keep`` of it when
    given), byte for byte."""
    assert store.column_names == expected.column_names
    for name in expected.column_names:
        want = np.asarray(expected.column(name)[:])
        if keep is not None:
            want = want[keep]
        got = np.asarray(store.column(name)[:])
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name


def _shard_files(store_dir: pathlib.Path) -> dict[str, int]:
    return {
        str(p.relative_to(store_dir)): p.stat().st_mtime_ns
        for p in sorted(store_dir.rglob("*"))
        if p.is_file()
    }


def test_local_cluster_matches_single_process_store(
    captures, flows_config, reference, client, tmp_path
):
    store_dir = tmp_path / "store"
    summary = preprocess_captures(
        captures, store_dir, flows_config, client=client, shard_flows=SHARD_FLOWS
    )
    store = Store.open(store_dir, expect_flows_config=flows_config)

    assert summary.built == list(range(NUM_CAPTURES))
    assert summary.failed == [] and summary.skipped == []
    assert store.num_flows == reference.num_flows > 400
    assert store.captures == reference.captures == sorted(captures)
    _assert_same_arrays(store, reference)
    # Shard boundaries too: the same files hold the same flows.
    for got, want in zip(
        store.manifest["captures"], reference.manifest["captures"], strict=True
    ):
        assert got["shards"] == want["shards"]
        assert len(got["shards"]) > 1
        assert got["sha256"] == want["sha256"]
        assert got["packets_read"] == want["packets_read"]
    # Flows never span captures: each capture's flows sit in its own folder.
    capture_index = store.column("capture_index")[:]
    assert np.all(np.diff(capture_index) >= 0)
    assert summary.packets == sum(r["packets_read"] for r in store.manifest["captures"])
    assert summary.flows == store.num_flows

    # A second run finds every done record and changes no file.
    before = _shard_files(store_dir)
    again = preprocess_captures(
        captures, store_dir, flows_config, client=client, shard_flows=SHARD_FLOWS
    )
    assert again.built == [] and again.failed == []
    assert again.skipped == list(range(NUM_CAPTURES))
    assert _shard_files(store_dir) == before


def test_resumes_after_lost_records_and_stale_folders(
    captures, flows_config, reference, client, tmp_path
):
    store_dir = tmp_path / "store"
    preprocess_captures(
        captures, store_dir, flows_config, client=client, shard_flows=SHARD_FLOWS
    )
    # Capture 1 looks unfinished (no done record, a stray shard); a folder of a
    # capture beyond the list is left over from a larger build.
    (store_dir / "captures" / "c00001" / "done.json").unlink()
    (store_dir / "captures" / "c00001" / "s00099").mkdir()
    (store_dir / "captures" / "c00009").mkdir()

    summary = preprocess_captures(
        captures, store_dir, flows_config, client=client, shard_flows=SHARD_FLOWS
    )
    assert summary.built == [1]
    assert summary.skipped == [0, 2, 3]
    assert not (store_dir / "captures" / "c00001" / "s00099").exists()
    assert not (store_dir / "captures" / "c00009").exists()
    _assert_same_arrays(Store.open(store_dir), reference)


def _fail_on_day2(job: CaptureJob) -> dict:
    """A task that always fails on one capture and counts its attempts."""
    if os.path.basename(job.capture) == "day2.pcap":
        attempts = pathlib.Path(job.store).parent / "attempts.log"
        with open(attempts, "a") as f:
            f.write(f"{job.index}\n")
        raise RuntimeError("this capture always fails")
    return build_capture_shards(job)


def _killed_once_mid_capture(job: CaptureJob) -> dict:
    """On its first try at capture 1, leaves half-written shards and kills its
    own worker process; every other run is the real task."""
    marker = pathlib.Path(job.store).parent / "killed.marker"
    if job.index == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        shard = pathlib.Path(job.store) / "captures" / "c00001" / "s00000"
        shard.mkdir(parents=True, exist_ok=True)
        (shard / "packets.npy").write_bytes(b"half a shard")
        os.kill(os.getpid(), signal.SIGKILL)
    return build_capture_shards(job)


def test_failing_capture_is_retried_then_recorded(
    captures, flows_config, reference, client, tmp_path
):
    store_dir = tmp_path / "store"
    summary = preprocess_captures(
        captures,
        store_dir,
        flows_config,
        client=client,
        shard_flows=SHARD_FLOWS,
        retries=1,
        build_fn=_fail_on_day2,
    )
    bad = sorted(captures).index(str(pathlib.Path(captures[0]).parent / "day2.pcap"))
    assert summary.failed == [bad]
    assert summary.built == [i for i in range(NUM_CAPTURES) if i != bad]
    # Tried once, then once more (retries=1).
    assert (tmp_path / "attempts.log").read_text().split() == [str(bad)] * 2

    store = Store.open(store_dir)
    record = store.manifest["captures"][bad]
    assert record["task_failed"] is True
    assert "RuntimeError: this capture always fails" in record["error"]
    assert record["flows_written"] == 0 and record["shards"] == []
    done = json.loads(
        (store_dir / "captures" / f"c{bad:05d}" / "done.json").read_text()
    )
    assert done["error"] == record["error"]
    # The other captures are all there, with the capture indices of the full list.
    keep = reference.column("capture_index")[:] != bad
    _assert_same_arrays(store, reference, keep=keep)

    # A rerun keeps the failure recorded and does nothing; asked to, it retries.
    assert (
        preprocess_captures(
            captures, store_dir, flows_config, client=client, shard_flows=SHARD_FLOWS
        ).built
        == []
    )
    retried = preprocess_captures(
        captures,
        store_dir,
        flows_config,
        client=client,
        shard_flows=SHARD_FLOWS,
        retry_failed=True,
    )
    assert retried.built == [bad] and retried.failed == []
    _assert_same_arrays(Store.open(store_dir), reference)


def test_worker_killed_mid_capture_is_replaced(
    captures, flows_config, reference, client, tmp_path
):
    store_dir = tmp_path / "store"
    summary = preprocess_captures(
        captures,
        store_dir,
        flows_config,
        client=client,
        shard_flows=SHARD_FLOWS,
        build_fn=_killed_once_mid_capture,
    )
    killed_pid = (tmp_path / "killed.marker").read_text()
    assert summary.built == list(range(NUM_CAPTURES)) and summary.failed == []
    store = Store.open(store_dir)
    assert store.manifest["captures"][1]["host"].split(":")[-1] != killed_pid
    _assert_same_arrays(store, reference)
    client.wait_for_workers(2, timeout=120)  # the killed worker was replaced


def test_config_mismatch_is_refused(captures, flows_config, client, tmp_path):
    store_dir = tmp_path / "store"
    preprocess_captures(captures[:1], store_dir, flows_config, client=client)
    other = configs.get_config("cnn_lstm", tiny=True).flows
    other.bytes_per_packet = 48
    with pytest.raises(Exception, match="bytes_per_packet") as error:
        preprocess_captures(captures[:1], store_dir, other, client=client)
    assert type(error.value).__name__ == "StoreConfigMismatchError"


def test_missing_capture_is_named(flows_config, client, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        preprocess_captures(
            [str(tmp_path / "nothing-here*.pcap")],
            tmp_path / "store",
            flows_config,
            client=client,
        )


def test_local_cluster_listens_on_loopback_only(client):
    info = client.scheduler_info()
    addresses = [client.scheduler.address, *info["workers"]]
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
    me = psutil.Process()
    listening = [
        connection.laddr
        for process in [me, *me.children(recursive=True)]
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    ]
    # Scheduler, nannies and workers each listen; none on another interface.
    assert len(listening) >= 5
    assert {address.ip for address in listening} == {"127.0.0.1"}, listening


def test_object_store_urls_through_fsspec(captures, flows_config, reference):
    """Captures read from and a store written to a URL (fsspec's in-memory
    filesystem stands in for a bucket; an in-process cluster shares it)."""
    import fsspec

    memory = fsspec.filesystem("memory")
    urls = []
    for path in sorted(captures):
        url = f"memory://bucket/captures/{os.path.basename(path)}"
        memory.pipe_file(url, pathlib.Path(path).read_bytes())
        urls.append(url)
    store_url = "memory://bucket/stores/day"
    try:
        with (
            distributed.LocalCluster(
                n_workers=1,
                processes=False,
                threads_per_worker=1,
                dashboard_address="127.0.0.1:0",
                scheduler_kwargs={"dashboard": False},
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            summary = preprocess_captures(
                ["memory://bucket/captures/day*.pcap"],
                store_url,
                flows_config,
                client=client,
                shard_flows=SHARD_FLOWS,
            )
            again = preprocess_captures(
                urls, store_url, flows_config, client=client, shard_flows=SHARD_FLOWS
            )
        assert summary.built == list(range(NUM_CAPTURES))
        assert again.built == [] and again.skipped == list(range(NUM_CAPTURES))

        manifest = json.loads(memory.cat_file(f"{store_url}/manifest.json"))
        # Each record names its capture by a URL that reads back that capture.
        for record, path in zip(manifest["captures"], sorted(captures), strict=True):
            assert record["path"].startswith("memory://")
            assert memory.cat_file(record["path"]) == pathlib.Path(path).read_bytes()
        assert manifest["num_flows"] == reference.num_flows
        for got, want in zip(
            manifest["captures"], reference.manifest["captures"], strict=True
        ):
            assert got["shards"] == want["shards"]
            assert got["sha256"] == want["sha256"]
            assert got["size"] == want["size"] and got["mtime_ns"] is not None
            for shard in got["shards"]:
                folder = f"captures/c{got['index']:05d}/{shard['name']}"
                for name in reference.column_names:
                    local = reference.store_dir / folder / f"{name}.npy"
                    remote = memory.cat_file(f"{store_url}/{folder}/{name}.npy")
                    assert remote == local.read_bytes(), (folder, name)
    finally:
        memory.rm("memory://bucket", recursive=True)


def test_command_line_builds_the_store(captures, flows_config, reference, tmp_path):
    import subprocess
    import sys

    store_dir = tmp_path / "store"
    folder = pathlib.Path(captures[0]).parent
    command = [
        sys.executable,
        "-m",
        "stfe_jax.distributed.preprocess",
        f"--captures={folder}/day*.pcap",
        f"--store={store_dir}",
        "--workers=1",
        "--tiny",
        f"--shard_flows={SHARD_FLOWS}",
    ]
    repo = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 built, 0 skipped, 0 failed" in done.stderr
    _assert_same_arrays(
        Store.open(store_dir, expect_flows_config=flows_config), reference
    )
