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
