"""Training over 2 JAX processes on the CPU (2 fake devices each, gloo over
127.0.0.1) against one process fed the same global batches: the same parameters
within float tolerance, resumed across process counts, and every validation and
test flow scored once."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from test_distributed_preprocess import _write_capture

from stfe_jax import configs
from stfe_jax.store import build_store
from stfe_jax.store.splits import assign_split

pytestmark = pytest.mark.timeout(900)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300
STEPS = 6
OVERRIDES = [
    f"train.steps={STEPS}",
    "train.eval_every=3",
    "train.log_every=3",
    "train.batch_size=32",
    "eval.batch_size=64",
    "train.prefetch=0",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory) -> pathlib.Path:
    """A store of two captures, labelled (UDP flows "anomalous") and split."""
    folder = tmp_path_factory.mktemp("multihost")
    captures = []
    for i in range(2):
        path = folder / f"c{i}.pcap"
        _write_capture(path, seed=10 + i, num_flows=300)
        captures.append(str(path))
    flows = configs.get_config("mlp", tiny=True).flows
    store = build_store(captures, folder / "store", flows)
    class_id = (store.column("protocol")[:] == 17).astype(np.int32)
    split = assign_split(
        store.column("start_ns")[:],
        store.column("capture_index")[:],
        policy="random",
        seed=0,
    )
    store.write_side_array("class_id", class_id)
    store.write_side_array("split", split)
    store.write_side_json("labels", {"class_names": ["benign", "anomalous"]})
    return folder / "store"


def _command(store, workdir, extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stfe_jax.distributed.train_multihost",
        f"--store={store}",
        f"--workdir={workdir}",
        "--model=mlp",
        "--tiny",
        *[f"--set={override}" for override in OVERRIDES],
        *extra,
    ]


def _environment(port: int | None) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO_ROOT)
    if port is not None:
        env["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{port}"
    return env


def _run_all(commands_and_envs, workdir: pathlib.Path, name: str) -> None:
    """Runs the processes together, each bounded by RUN_TIMEOUT_S; fails with
    their logs if any fails."""
    paths = [workdir / f"{name}{i}.log" for i in range(len(commands_and_envs))]
    logs = [open(path, "w") for path in paths]
    processes = [
        subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=log, stderr=log)
        for (command, env), log in zip(commands_and_envs, logs, strict=True)
    ]
    codes = []
    try:
        for process in processes:
            codes.append(process.wait(timeout=RUN_TIMEOUT_S))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
    if any(codes):
        texts = [path.read_text()[-3000:] for path in paths]
        pytest.fail(f"exit codes {codes}:\n" + "\n-----\n".join(texts))


def _last_params(workdir: pathlib.Path) -> dict:
    """The parameters of the last checkpoint, read back with Orbax."""
    last = workdir / "checkpoints" / "last"
    steps = sorted(int(p.name) for p in last.iterdir() if p.name.isdigit())
    assert steps == [STEPS]
    path = last / str(STEPS) / "state"
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(path).item_metadata
        target = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
            metadata,
        )
        state = checkpointer.restore(path, target)
    return state["params"]


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}/{key}"))
        return out
    return {prefix: np.asarray(tree)}


def test_two_processes_train_like_one(labelled_store, tmp_path):
    """Two processes train unbroken; one process holding both data parts trains
    half-way and stops, and two processes resume its checkpoint: both end with
    the same parameters, having seen the same global batches."""
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()

    def pair(workdir, extra):
        port = _free_port()
        flags = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
        return [
            (
                _command(
                    labelled_store, workdir, [*flags, f"--process_id={i}", *extra]
                ),
                _environment(port),
            )
            for i in range(2)
        ]

    _run_all(
        [
            *pair(two, []),
            (
                _command(
                    labelled_store,
                    one,
                    ["--num_parts=2", f"--set=train.stop_at_step={STEPS // 2}"],
                ),
                _environment(None),
            ),
        ],
        tmp_path,
        "first",
    )
    stopped = json.loads((one / "results.json").read_text())
    assert stopped["interrupted"] and stopped["final_step"] == STEPS // 2
    assert stopped["process_count"] == 1
    assert stopped["timings"]["num_devices"] == 2
    _run_all(pair(one, ["--resume"]), tmp_path, "resumed")

    two_results = json.loads((two / "results.json").read_text())
    one_results = json.loads((one / "results.json").read_text())
    assert two_results["process_count"] == one_results["process_count"] == 2
    assert two_results["timings"]["num_devices"] == 4
    assert one_results["resumed_from"] == STEPS // 2
    assert two_results["final_step"] == one_results["final_step"] == STEPS

    # Training moved the parameters, identically in both runs.
    losses = [entry["loss"] for entry in two_results["history"]]
    assert len(losses) == 2 and losses[0] != losses[1]
    two_params, one_params = _flat(_last_params(two)), _flat(_last_params(one))
    assert two_params.keys() == one_params.keys() and len(two_params) >= 4
    for name, value in two_params.items():
        np.testing.assert_allclose(value, one_params[name], rtol=1e-4, atol=1e-6)
    # The first validation of the resumed run was made by the single process.
    for a, b in zip(two_results["history"], one_results["history"], strict=True):
        assert a["step"] == b["step"]
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
        np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-5)

    # Every validation and test flow counted exactly once.
    split = np.load(labelled_store / "side" / "split.npy")
    for name, side in (("val", 1), ("test", 2)):
        expected = int(np.sum(split == side))
        assert expected > 0
        assert two_results["splits"][name]["flows_scored"] == expected
        assert one_results["splits"][name]["flows_scored"] == expected
        np.testing.assert_allclose(
            two_results["splits"][name]["accuracy"],
            one_results["splits"][name]["accuracy"],
        )
        np.testing.assert_allclose(
            two_results["splits"][name]["loss"],
            one_results["splits"][name]["loss"],
            rtol=1e-5,
        )
