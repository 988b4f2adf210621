"""Tests of stfe_jax.evaluate.report: files written, numbers carried into markdown."""

import json

import ml_collections
import numpy as np
import pytest
from scipy.special import softmax

from stfe_jax.evaluate import metrics, report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASS_NAMES = ["benign", "anomalous"]


def _predictions(n, seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.25).astype(np.int64)
    logits = np.stack([np.zeros(n), rng.normal(size=n) + 2.0 * labels - 1.0], axis=1)
    return labels, softmax(logits, axis=1).astype(np.float32)


def _config():
    return ml_collections.ConfigDict(
        {"split": {"policy": "time", "seed": 5}, "flows": {"packets_per_flow": 8}}
    )


def _full_result(model="cnn_lstm"):
    labels, probs = _predictions(300, seed=0)
    val_labels, val_probs = _predictions(200, seed=1)
    rng = np.random.default_rng(2)
    train_labels = (rng.random(400) < 0.3).astype(np.int64)
    return {
        "model": model,
        "class_names": CLASS_NAMES,
        "test": {"labels": labels, "probs": probs},
        "val": {"labels": val_labels, "probs": val_probs},
        "threshold": metrics.choose_threshold(val_labels, val_probs),
        "features": {
            "train": rng.normal(size=(400, 6)) + 3.0 * train_labels[:, None],
            "train_labels": train_labels,
            "test": rng.normal(size=(300, 6)) + 3.0 * labels[:, None],
            "test_labels": labels,
        },
        "history": [
            {"step": 10 * i, "loss": 1.0 / (i + 1), "val_metric": 0.5 + 0.05 * i}
            for i in range(6)
        ],
        "timing": {"compile_s": 4.25, "samples_per_s": 1234.5, "train_s": 60.0},
        "dataset": {
            "name": "generated MAWI-like day",
            "synthetic": True,
            "flows_per_split": {
                "train": {"benign": 280, "anomalous": 120},
                "val": {"benign": 150, "anomalous": 50},
                "test": {"benign": 225, "anomalous": 75},
            },
            "split_policy": "time",
            "duplicate_share_test_in_train": 0.0317,
            "label_report": "anomalous: 245 flows\nbenign: 655 flows",
        },
    }


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5_000, (path, len(data))


def test_model_report_files_and_numbers(tmp_path):
    result = _full_result()
    report.write_model_report(tmp_path, result, _config())

    summary = json.loads((tmp_path / "report.json").read_text())
    markdown = (tmp_path / "report.md").read_text()
    m = summary["metrics"]

    expected = metrics.classification_metrics(
        result["test"]["labels"],
        result["test"]["probs"],
        CLASS_NAMES,
        threshold=result["threshold"]["threshold"],
    )
    assert m == expected
    assert "synthetic" in summary["title"].lower()
    assert markdown.startswith(f"# {summary['title']}\n")
    for value in (
        m["accuracy"],
        m["macro"]["f1"],
        m["detection_rate"],
        m["false_alarm_rate"],
        m["roc_auc"],
        m["pr_auc"],
        m["threshold"],
        summary["operating_point"]["false_alarm_rate"],
        0.0317,
    ):
        assert report.format_value(value) in markdown
    for row_name, row in zip(CLASS_NAMES, m["confusion_matrix"], strict=True):
        assert f"| {row_name} | {row[0]} | {row[1]} |" in markdown
    assert "| test | 225 | 75 | 300 |" in markdown
    assert "anomalous: 245 flows" in markdown
    assert "| compile_s | 4.2500 |" in markdown

    probes = summary["probes"]
    assert set(probes) == {"logistic_regression", "random_forest"}
    assert probes["random_forest"]["operating_point"] is None  # no val features
    lr_accuracy = probes["logistic_regression"]["metrics"]["accuracy"]
    assert f"| features + logistic regression | {lr_accuracy:.4f} |" in markdown

    assert json.loads((tmp_path / "config.json").read_text()) == _config().to_dict()
    saved = np.load(tmp_path / "test_predictions.npz")
    np.testing.assert_array_equal(saved["labels"], result["test"]["labels"])
    assert set(summary["plots"]) == {
        "confusion_matrix",
        "roc_curve",
        "pr_curve",
        "history",
        "feature_projection",
    }
    for file in summary["plots"].values():
        _assert_png(tmp_path / file)
        assert f"]({file})" in markdown


def test_minimal_result_without_optional_keys(tmp_path):
    labels, probs = _predictions(50, seed=3)
    result = {
        "model": "mlp",
        "class_names": CLASS_NAMES,
        "test": {"labels": labels, "probs": probs},
    }
    report.write_model_report(tmp_path, result, None)

    summary = json.loads((tmp_path / "report.json").read_text())
    markdown = (tmp_path / "report.md").read_text()
    assert summary["title"] == "mlp on the test split"
    assert summary["operating_point"] is None
    assert summary["metrics"]["decision_rule"] == "argmax"
    assert "probes" not in summary and "history" not in summary
    assert "No threshold" in markdown and "## Dataset" not in markdown
    assert not (tmp_path / "config.json").exists()
    assert set(summary["plots"]) == {"confusion_matrix", "roc_curve", "pr_curve"}


def test_missing_required_key_is_named(tmp_path):
    with pytest.raises(KeyError, match="test"):
        report.write_model_report(
            tmp_path, {"model": "mlp", "class_names": CLASS_NAMES}, None
        )


def test_comparison_table_rows_and_title(tmp_path):
    cnn_lstm = _full_result("cnn_lstm")
    mlp = _full_result("mlp")
    del mlp["features"]
    mlp["threshold"] = None
    mlp["baseline"] = {
        "name": "flow statistics + random forest",
        "metrics": metrics.classification_metrics(
            cnn_lstm["test"]["labels"], np.full((300, 2), 0.5), CLASS_NAMES
        ),
    }

    markdown = report.write_comparison(
        tmp_path, {"cnn_lstm": cnn_lstm, "mlp": mlp}, _config(), title="Four models"
    )

    table = json.loads((tmp_path / "comparison.json").read_text())
    assert table["title"] == "Four models (synthetic data)"
    assert markdown.startswith("## Four models (synthetic data)\n")
    assert [row["name"] for row in table["rows"]] == [
        "cnn_lstm",
        "cnn_lstm features + logistic regression",
        "cnn_lstm features + random forest",
        "mlp",
        "flow statistics + random forest",
    ]
    assert table["columns"] == [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "detection_rate",
        "false_alarm_rate",
        "roc_auc",
        "pr_auc",
    ]
    for row in table["rows"]:
        cells = [report.format_value(row[key]) for key in table["columns"]]
        assert f"| {row['name']} | " + " | ".join(cells) + " |" in markdown
    mlp_row = table["rows"][3]
    assert mlp_row["decision"] == "argmax"
    assert table["rows"][-1]["roc_auc"] == pytest.approx(0.5)
    assert (tmp_path / "comparison.md").read_text().startswith(markdown)
    assert (tmp_path / "config.json").exists()
    for file in table["plots"].values():
        _assert_png(tmp_path / file)


def test_title_kept_when_it_already_says_synthetic():
    result = _full_result()
    result["title"] = "CNN-LSTM, Synthetic day"
    assert report.report_title(result) == "CNN-LSTM, Synthetic day"
    result["dataset"]["synthetic"] = False
    result["title"] = "CNN-LSTM, MAWI 2019-04-09"
    assert report.report_title(result) == "CNN-LSTM, MAWI 2019-04-09"


def test_metrics_line_and_table_show_the_values():
    labels, probs = _predictions(80, seed=4)
    m = metrics.classification_metrics(labels, probs, CLASS_NAMES)
    line = report.format_metrics_line(m)
    assert f"accuracy {m['accuracy']:.4f}" in line
    assert f"flows {len(labels)}" in line
    table = report.format_metrics_table({"lstm": m})
    assert table.splitlines()[2].startswith(f"| lstm | {m['accuracy']:.4f} |")


def test_training_loop_layout_is_accepted(tmp_path):
    full = _full_result()
    features = full["features"]
    split = {
        "train": {
            "labels": features["train_labels"],
            "probs": np.full((400, 2), 0.5, np.float32),
            "features": features["train"],
            "loss": 0.7,
        },
        "val": {**full["val"], "features": np.zeros((200, 6)), "loss": 0.5},
        "test": {**full["test"], "features": features["test"], "loss": 0.4},
    }
    threshold = dict(full["threshold"], score="1 - p(benign)", best_step=40)
    trained = {
        "model": "cnn",
        "class_names": CLASS_NAMES,
        "normal_class": 0,
        "splits": split,
        "threshold": threshold,
        "history": full["history"],
        "timings": {"compile_s": 2.5, "steps_per_s": 7.25},
        "params": {"dense": {"kernel": np.ones((3, 3))}},
        "dataset": {"n_train": 400, "n_val": 200, "n_test": 300},
    }
    report.write_model_report(tmp_path, trained, None)

    summary = json.loads((tmp_path / "report.json").read_text())
    markdown = (tmp_path / "report.md").read_text()
    assert summary["metrics"]["n_flows"] == 300
    assert summary["val_metrics"]["n_flows"] == 200
    assert summary["timing"] == {"compile_s": 2.5, "steps_per_s": 7.25}
    assert "params" not in summary
    assert set(summary["probes"]) == {"logistic_regression", "random_forest"}
    for probe in summary["probes"].values():  # thresholds from the val features
        assert probe["n_val"] == 200 and probe["operating_point"]["n_flows"] == 200
    assert "| steps_per_s | 7.2500 |" in markdown
    assert '"n_test": 300' in markdown
