"""The main job end to end on the tiny config: synthetic day to report."""

import json
import subprocess
import sys

import pytest

from stfe_jax import main
from tests.conftest import REPO_ROOT


def test_tiny_job_on_synthetic_day_writes_reports(tmp_path):
    options = main.JobOptions(
        model="all",
        workdir=str(tmp_path),
        tiny=True,
        synthetic_scale=0.05,
    )
    results = main.train_job(options)

    assert sorted(results) == sorted(main.MODEL_NAMES)
    comparison = (tmp_path / "comparison.md").read_text()
    assert "SYNTHETIC" in comparison
    for name in main.MODEL_NAMES:
        report = json.loads((tmp_path / name / "report.json").read_text())
        test_metrics = report["metrics"]
        assert 0.0 <= test_metrics["accuracy"] <= 1.0
        # Every test flow is counted exactly once.
        assert sum(map(sum, test_metrics["confusion_matrix"])) == len(
            results[name]["test"]["labels"]
        )
        assert (tmp_path / name / "config.json").exists()
        assert name in comparison


def test_run_py_rejects_unknown_model(tmp_path):
    completed = subprocess.run(
        [sys.executable, "run.py", "--model=transformer", f"--workdir={tmp_path}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "transformer" in completed.stderr


def test_expand_captures_names_the_pattern_that_matches_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        main.expand_captures([str(tmp_path / "nothing-here*.pcap")])


def test_labels_naming_only_missing_captures_are_refused_not_replaced(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("capture,class\nmissing.pcap,normal\n")
    options = main.JobOptions(labels=[str(labels)], workdir=str(tmp_path / "w"))

    with pytest.raises(FileNotFoundError, match="no per-capture label file"):
        main.train_job(options)
    assert not (tmp_path / "w" / "synthetic_day").exists()


def test_bad_label_row_fails_before_the_store_is_built(tmp_path):
    capture = tmp_path / "empty.pcap"
    capture.write_bytes(b"")
    labels = tmp_path / "20200101_anomalous_suspicious.csv"
    labels.write_text(
        "anomalyID, srcIP, srcPort, dstIP, dstPort, taxonomy, heuristic, distance, "
        "nbDetectors, label\n1,10.0.0.1,,,,ntscSYN\n"
    )
    options = main.JobOptions(
        captures=[str(capture)], labels=[str(labels)], workdir=str(tmp_path / "w")
    )

    with pytest.raises(ValueError, match="line 2"):
        main.train_job(options)
    assert not (tmp_path / "w" / "store").exists()


def test_preprocess_fails_when_no_capture_can_be_read(tmp_path):
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture\n")
    options = main.JobOptions(
        mode="preprocess", captures=[str(text)], workdir=str(tmp_path), tiny=True
    )

    with pytest.raises(ValueError, match="none of the 1 captures"):
        main.preprocess_job(options)


def test_given_store_keeps_its_flows_config_and_refuses_another(tmp_path):
    from stfe_jax.store import StoreConfigMismatchError

    main.preprocess_job(
        main.JobOptions(
            mode="preprocess", workdir=str(tmp_path), tiny=True, synthetic_scale=0.01
        )
    )
    store_dir = str(tmp_path / "store")

    config = main.load_config("cnn_lstm", main.JobOptions())
    store = main.open_given_store(main.JobOptions(store=store_dir), config)
    assert config.flows.bytes_per_packet == store.options.bytes_per_packet == 32

    with pytest.raises(StoreConfigMismatchError, match="bytes_per_packet"):
        main.open_given_store(
            main.JobOptions(store=store_dir, overrides=["flows.bytes_per_packet=64"]),
            main.load_config(
                "cnn_lstm", main.JobOptions(overrides=["flows.bytes_per_packet=64"])
            ),
        )
