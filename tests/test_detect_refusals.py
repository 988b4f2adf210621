"""Bad input to detection: incompatible checkpoints, damaged captures, no tshark."""

from __future__ import annotations

import io
import json
import shutil
import struct

import pytest

from stfe_jax import main
from stfe_jax.detect import job
from stfe_jax.detect.checkpoint import CheckpointError, load_detector
from stfe_jax.detect.tools import ToolMissingError
from tests.test_detect_support import (  # noqa: F401 - fixture
    scan_records,
    trained_model,
    write_capture,
)


@pytest.fixture
def checkpoint_copy(trained_model, tmp_path):  # noqa: F811
    """A copy of the trained model's checkpoints, free to damage."""
    copy = tmp_path / "model" / "checkpoints"
    shutil.copytree(trained_model / "checkpoints", copy)
    return copy


def _edit_json(path, edit):
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def test_unknown_store_format_version_is_refused(checkpoint_copy):
    _edit_json(
        checkpoint_copy / "preprocessing.json",
        lambda r: r.update(store_format_version=99),
    )
    with pytest.raises(CheckpointError, match=r"version 99; this code reads .* 1"):
        load_detector(checkpoint_copy.parent)


def test_flows_config_that_differs_from_training_is_refused(checkpoint_copy):
    def edit(config):
        config["flows"]["bytes_per_packet"] = 64
        config["flows"]["mask_ttl"] = True

    _edit_json(checkpoint_copy / "config.json", edit)
    with pytest.raises(CheckpointError) as error:
        load_detector(checkpoint_copy)
    message = str(error.value)
    assert "flows section differs" in message
    assert "bytes_per_packet: 32 != 64" in message
    assert "mask_ttl: False != True" in message


def test_model_config_that_differs_from_training_is_refused(checkpoint_copy):
    _edit_json(
        checkpoint_copy / "config.json",
        lambda c: c["model"].update(lstm_hidden=48),
    )
    with pytest.raises(CheckpointError, match="lstm_hidden: 16 != 48"):
        load_detector(checkpoint_copy)


def test_parameters_that_do_not_fit_the_model_are_refused(checkpoint_copy):
    # Both records agree on a wider LSTM, but the saved parameters are 16 wide.
    for name in ("config.json", "preprocessing.json"):
        _edit_json(checkpoint_copy / name, lambda c: c["model"].update(lstm_hidden=48))
    with pytest.raises(CheckpointError, match=r"do not fit .* model \(.*48"):
        load_detector(checkpoint_copy)


def test_missing_threshold_file_is_named(checkpoint_copy):
    (checkpoint_copy / "threshold.json").unlink()
    with pytest.raises(CheckpointError, match=r"threshold.json: missing"):
        load_detector(checkpoint_copy)


def test_directory_without_a_model_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="preprocessing.json"):
        load_detector(tmp_path)


def test_capture_damaged_part_way_still_yields_alerts(trained_model, tmp_path):  # noqa: F811
    records = sorted(scan_records(seed=5, ports=200), key=lambda r: r[0])
    damaged = write_capture(tmp_path / "damaged.pcap", records)
    # Record 200 (of 400) claims a caplen far beyond any snaplen.
    offset = 24 + sum(16 + len(frame) for _, frame in records[:200])
    data = bytearray(damaged.read_bytes())
    data[offset + 8 : offset + 12] = struct.pack("<I", 0x7FFFFFF0)
    damaged.write_bytes(bytes(data))
    # The same first 200 packets, undamaged, give the flows expected.
    intact = write_capture(tmp_path / "intact.pcap", records[:200])

    printed = io.StringIO()
    out_dir = tmp_path / "out"
    summary = job.run(
        main.JobOptions(
            mode="detect",
            checkpoint=str(trained_model),
            captures=[str(damaged), str(intact)],
            workdir=str(out_dir),
            threshold=0.0,
        ),
        out=printed,
    )
    per_capture = summary["captures"]
    assert per_capture[str(damaged)]["packets"] == 200
    assert per_capture[str(damaged)]["flows"] == per_capture[str(intact)]["flows"]
    assert per_capture[str(damaged)]["flows"] == 100  # one SYN+RST flow per port
    assert per_capture[str(damaged)]["alerts"] == 100
    error = per_capture[str(damaged)]["error"]
    assert f"offset {offset}" in error and "200 packets read before it" in error
    assert per_capture[str(intact)]["error"] is None
    text = printed.getvalue()
    assert "read with error" in text and f"offset {offset}" in text


def test_file_that_is_no_capture_is_reported_and_others_still_scored(
    trained_model,  # noqa: F811
    tmp_path,
):
    not_a_capture = tmp_path / "notes.pcap"
    not_a_capture.write_text("this is not a capture\n")
    good = write_capture(tmp_path / "good.pcap", scan_records(seed=6, ports=10))
    summary = job.run(
        main.JobOptions(
            mode="detect",
            checkpoint=str(trained_model),
            captures=[str(not_a_capture), str(good)],
            workdir=str(tmp_path / "out"),
            threshold=0.0,
        ),
        out=io.StringIO(),
    )
    assert "not read" in summary["captures"][str(not_a_capture)]["error"]
    assert "offset 0" in summary["captures"][str(not_a_capture)]["error"]
    assert summary["captures"][str(good)]["flows"] == 10


@pytest.mark.parametrize(
    "request_",
    [
        {"captures": ["unused.pcap"], "explain": 3},
        {"interface": "lo"},
    ],
    ids=["explain", "live"],
)
def test_missing_tshark_is_reported_with_how_to_install_it(
    request_, tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tshark, no dumpcap
    options = main.JobOptions(mode="detect", checkpoint=str(tmp_path), **request_)
    with pytest.raises(ToolMissingError) as error:
        job.run(options, out=io.StringIO())
    message = str(error.value)
    assert "not found on the PATH" in message
    assert "apt-get install tshark" in message
