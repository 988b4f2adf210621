"""Reports of trained models: ``report.json``, ``report.md``, ``config.json`` and
PNG plots for one model, and one comparison table across models.

The ``result`` dict a training run hands to ``write_model_report`` (numpy arrays
or lists; everything but ``model``, ``class_names`` and ``test`` is optional, and a
missing key leaves its section out of the report):

- ``model``: str, the model's name, e.g. ``"cnn_lstm"``.
- ``class_names``: list of C str, in class-index order.
- ``test``: ``{"labels": int (n,), "probs": float (n, C)}``, every test flow
  exactly once (padding rows already dropped), probabilities not logits.
- ``title``: str, the report's heading (default ``"<model> on <dataset name>"``).
  When ``dataset["synthetic"]`` is true and the title does not say "synthetic",
  " (synthetic data)" is appended, here and in the comparison.
- ``normal_class``: int, index of the benign class (default 0).
- ``val``: ``{"labels", "probs"}``, the validation flows, laid out like ``test``.
- ``threshold``: the dict returned by ``metrics.choose_threshold`` on the
  validation flows, or a float anomaly-score threshold, or None (argmax).
- ``metrics`` / ``val_metrics``: ``metrics.classification_metrics`` of the test /
  validation flows at the threshold; computed from ``test`` / ``val`` when absent.
  ``metrics_argmax`` (test flows, argmax decision) is added when a threshold is set.
- ``features``: ``{"train": float (m, d), "train_labels": int (m,),
  "test": float (k, d), "test_labels": int (k,)}`` and optionally ``"val"``,
  ``"val_labels"``: the learned features (the layer before the classifier) of
  training, test and validation flows. With validation features, each probe
  chooses its threshold on them as the networks do.
- ``probes``: the dict returned by ``probes.feature_probe``; computed from
  ``features`` when absent.
- ``baseline``: the dict returned by ``flow_statistics.flow_statistics_baseline``.
- ``history``: list of ``{"step": int, "loss": float, "val_metric": float or
  None}`` with optional ``"epoch"``, ``"val_loss"``, ``"val_metric_name"``.
- ``timing``: dict of numbers, e.g. ``compile_s``, ``train_s``, ``eval_s``,
  ``steps_per_s``, ``samples_per_s`` (seconds, per second).
- ``dataset``: dict with any of ``name`` (str), ``synthetic`` (bool),
  ``flows_per_split`` (``{split: {class name: flows}}``), ``split_policy`` (str
  or dict), ``duplicate_share_test_in_train`` (share of test sample tensors that
  also occur in train, in [0, 1]), ``label_report`` (str or dict); further keys
  are shown as JSON.
- ``seed``: int seed of the probes and the projection (default: the config's
  ``split.seed``, else 0).

The dict returned by ``stfe_jax.train.train_and_evaluate`` is accepted as it
is: its ``splits`` (``train``/``val``/``test``, each with ``labels``, ``probs``
and ``features``) stand for ``test``, ``val`` and ``features``, and its
``timings`` for ``timing`` (see ``from_training_layout``).
"""

from __future__ import annotations

import datetime
import json
import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from stfe_jax.evaluate import metrics as metrics_lib

# Comparison columns: (JSON key, markdown header, getter on a metrics dict).
COMPARISON_COLUMNS = (
    ("accuracy", "Accuracy", lambda m: m["accuracy"]),
    ("precision", "Precision (macro)", lambda m: m["macro"]["precision"]),
    ("recall", "Recall (macro)", lambda m: m["macro"]["recall"]),
    ("f1", "F1 (macro)", lambda m: m["macro"]["f1"]),
    ("detection_rate", "Detection rate", lambda m: m["detection_rate"]),
    ("false_alarm_rate", "False alarm rate", lambda m: m["false_alarm_rate"]),
    ("roc_auc", "ROC AUC", lambda m: m["roc_auc"]),
    ("pr_auc", "PR AUC", lambda m: m["pr_auc"]),
)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CONFIG_JSON = "config.json"
PREDICTIONS_NPZ = "test_predictions.npz"
COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"


def format_value(value) -> str:
    """A number as the reports print it: floats to 4 decimals, None as "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{float(value):.4f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        lines.append("| " + " | ".join(format_value(v) for v in row) + " |")
    return "\n".join(lines)


def decision_label(metrics: Mapping) -> str:
    """How the metrics' predictions were made: "argmax" or "score >= t"."""
    threshold = metrics.get("threshold")
    return "argmax" if threshold is None else f"score >= {threshold:.4f}"


def format_metrics_table(rows: Mapping[str, Mapping]) -> str:
    """Markdown table of ``classification_metrics`` dicts, one row per name.

    Columns: accuracy, macro precision, recall and F1, detection rate, false
    alarm rate, ROC AUC, PR AUC of the anomaly score, the decision rule and the
    number of test flows.
    """
    header = ["", *(h for _, h, _ in COMPARISON_COLUMNS), "Decision", "Flows"]
    body = [
        [
            name,
            *(get(m) for _, _, get in COMPARISON_COLUMNS),
            decision_label(m),
            m["n_flows"],
        ]
        for name, m in rows.items()
    ]
    return markdown_table(header, body)


def format_metrics_line(metrics: Mapping) -> str:
    """One log line of the headline metrics of a ``classification_metrics`` dict."""
    return (
        f"flows {metrics['n_flows']} | accuracy {format_value(metrics['accuracy'])}"
        f" | macro F1 {format_value(metrics['macro']['f1'])}"
        f" | detection rate {format_value(metrics['detection_rate'])}"
        f" | false alarm rate {format_value(metrics['false_alarm_rate'])}"
        f" | ROC AUC {format_value(metrics['roc_auc'])}"
        f" | PR AUC {format_value(metrics['pr_auc'])}"
        f" | {decision_label(metrics)}"
    )


def to_jsonable(value):
    """Converts numpy scalars and arrays, tuples and non-finite floats for JSON."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _write_json(path: pathlib.Path, value) -> None:
    path.write_text(json.dumps(to_jsonable(value), indent=2, allow_nan=False) + "\n")


def write_config(workdir: str | pathlib.Path, config) -> pathlib.Path | None:
    """Writes the resolved config as ``config.json`` in workdir (None: nothing)."""
    if config is None:
        return None
    path = pathlib.Path(workdir) / CONFIG_JSON
    if hasattr(config, "to_json_best_effort"):
        path.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    else:
        _write_json(path, config)
    return path


def _config_seed(config) -> int:
    try:
        return int(config.split.seed)
    except (AttributeError, KeyError, TypeError):
        return 0


def report_title(result: Mapping) -> str:
    """The result's title, saying "synthetic" when its dataset is synthetic."""
    dataset = result.get("dataset") or {}
    title = result.get("title") or (
        f"{result['model']} on {dataset.get('name', 'the test split')}"
    )
    return _mark_synthetic(title, [dataset])


def _mark_synthetic(title: str, datasets: Sequence[Mapping]) -> str:
    synthetic = any(bool(d.get("synthetic")) for d in datasets if d)
    if synthetic and "synthetic" not in title.lower():
        title = f"{title} (synthetic data)"
    return title


def operating_point(result: Mapping) -> dict | None:
    """The result's threshold as a ``choose_threshold``-style dict, or None."""
    threshold = result.get("threshold")
    if threshold is None:
        return None
    if isinstance(threshold, Mapping):
        return dict(threshold)
    return {"threshold": float(threshold), "rule": "given", "note": None}


def _has_rows(split: Mapping | None, key: str) -> bool:
    if split is None or split.get(key) is None:
        return False
    return np.asarray(split[key]).shape[0] > 0


def from_training_layout(result: Mapping) -> dict:
    """A copy of ``result`` with ``test``, ``val``, ``features`` and ``timing``
    taken from the training loop's ``splits`` and ``timings`` where absent."""
    result = dict(result)
    splits = result.get("splits") or {}
    for name in ("test", "val"):
        split = splits.get(name)
        if result.get(name) is None and _has_rows(split, "probs"):
            result[name] = {"labels": split["labels"], "probs": split["probs"]}
    train, test = splits.get("train"), splits.get("test")
    if (
        result.get("features") is None
        and _has_rows(train, "features")
        and _has_rows(test, "features")
    ):
        result["features"] = {
            "train": train["features"],
            "train_labels": train["labels"],
            "test": test["features"],
            "test_labels": test["labels"],
        }
        val = splits.get("val")
        if _has_rows(val, "features"):
            result["features"].update(val=val["features"], val_labels=val["labels"])
    if result.get("timing") is None and result.get("timings") is not None:
        result["timing"] = result["timings"]
    return result


def complete_result(result: Mapping, config=None) -> dict:
    """A copy of ``result`` with ``metrics``, ``val_metrics``, ``metrics_argmax``
    and ``probes`` filled in where they are absent and can be computed."""
    result = from_training_layout(result)
    for key in ("model", "class_names", "test"):
        if key not in result:
            raise KeyError(
                f"result: missing required key {key!r} (an unscored or empty test "
                "split leaves no test flows to report)"
            )
    class_names = list(result["class_names"])
    normal_class = int(result.get("normal_class", 0))
    point = operating_point(result)
    threshold = None if point is None else point.get("threshold")

    if result.get("metrics") is None:
        test = result["test"]
        result["metrics"] = metrics_lib.classification_metrics(
            test["labels"],
            test["probs"],
            class_names,
            normal_class=normal_class,
            threshold=threshold,
        )
    if threshold is not None and result.get("metrics_argmax") is None:
        test = result["test"]
        result["metrics_argmax"] = metrics_lib.classification_metrics(
            test["labels"], test["probs"], class_names, normal_class=normal_class
        )
    if result.get("val_metrics") is None and _has_rows(result.get("val"), "labels"):
        val = result["val"]
        result["val_metrics"] = metrics_lib.classification_metrics(
            val["labels"],
            val["probs"],
            class_names,
            normal_class=normal_class,
            threshold=threshold,
        )
    features = result.get("features")
    if (
        result.get("probes") is None
        and _has_rows(features, "train_labels")
        and _has_rows(features, "test_labels")
    ):
        from stfe_jax.evaluate import probes  # scikit-learn model fitting

        result["probes"] = probes.feature_probe(
            features["train"],
            features["train_labels"],
            features["test"],
            features["test_labels"],
            class_names,
            seed=int(result.get("seed", _config_seed(config))),
            normal_class=normal_class,
            **(
                {"val_features": features["val"], "val_labels": features["val_labels"]}
                if _has_rows(features, "val_labels")
                else {}
            ),
        )
    return result


def _probe_rows(result: Mapping, prefix: str) -> dict[str, Mapping]:
    rows = {}
    for entry in (result.get("probes") or {}).values():
        if entry.get("metrics") is not None:
            rows[f"{prefix}{entry['name']}"] = entry["metrics"]
    return rows


def _skipped_notes(result: Mapping) -> list[str]:
    entries = [*(result.get("probes") or {}).values()]
    if result.get("baseline"):
        entries.append(result["baseline"])
    return [
        f"{e['name']}: skipped, {e['skipped']}" for e in entries if e.get("skipped")
    ]


def _dataset_section(dataset: Mapping) -> list[str]:
    lines = ["## Dataset", ""]
    for key, label in (
        ("name", "Data"),
        ("synthetic", "Synthetic"),
        ("split_policy", "Split policy"),
    ):
        if key in dataset:
            value = dataset[key]
            shown = value if isinstance(value, str) else json.dumps(to_jsonable(value))
            lines.append(f"- {label}: {format_value(shown)}")
    if "duplicate_share_test_in_train" in dataset:
        share = dataset["duplicate_share_test_in_train"]
        lines.append(
            "- Share of test sample tensors also in train: " + format_value(share)
        )
    lines.append("")

    per_split = dataset.get("flows_per_split")
    if per_split:
        classes = []
        for counts in per_split.values():
            classes += [c for c in counts if c not in classes]
        rows = [
            [split, *(counts.get(c, 0) for c in classes), sum(counts.values())]
            for split, counts in per_split.items()
        ]
        lines += [
            "Flows per split and class:",
            "",
            markdown_table(["split", *classes, "total"], rows),
            "",
        ]

    label_report = dataset.get("label_report")
    if label_report is not None:
        text = (
            label_report
            if isinstance(label_report, str)
            else json.dumps(to_jsonable(label_report), indent=2)
        )
        lines += ["Label report:", "", "```", text, "```", ""]

    shown = {
        "name",
        "synthetic",
        "split_policy",
        "duplicate_share_test_in_train",
        "flows_per_split",
        "label_report",
    }
    rest = {k: v for k, v in dataset.items() if k not in shown}
    if rest:
        lines += [
            "Further dataset facts:",
            "",
            "```json",
            json.dumps(to_jsonable(rest), indent=2),
            "```",
            "",
        ]
    return lines


def _binary_curve(labels, probs, normal_class: int):
    labels = np.asarray(labels)
    is_attack = labels != normal_class
    if is_attack.all() or not is_attack.any():
        return None
    return is_attack, metrics_lib.anomaly_score(probs, normal_class)


def _write_plots(workdir: pathlib.Path, result: Mapping, title: str, seed: int):
    from stfe_jax.evaluate import plots  # matplotlib is slow to import

    written = {}
    class_names = list(result["class_names"])
    normal_class = int(result.get("normal_class", 0))
    metrics = result["metrics"]
    written["confusion_matrix"] = plots.plot_confusion_matrix(
        metrics["confusion_matrix"],
        class_names,
        workdir / "confusion_matrix.png",
        title=f"{title}\n{decision_label(metrics)}",
    )
    curve = _binary_curve(
        result["test"]["labels"], result["test"]["probs"], normal_class
    )
    if curve is not None:
        curves = {result["model"]: curve}
        written["roc_curve"] = plots.plot_roc_curves(
            curves, workdir / "roc_curve.png", title=title
        )
        written["pr_curve"] = plots.plot_pr_curves(
            curves, workdir / "pr_curve.png", title=title
        )
    if result.get("history"):
        written["history"] = plots.plot_history(
            result["history"], workdir / "history.png", title=title
        )
    features = result.get("features")
    if features is not None and len(features["test_labels"]) > 0:
        written["feature_projection"] = plots.plot_feature_projection(
            features["test"],
            features["test_labels"],
            class_names,
            workdir / "feature_projection.png",
            title=f"{title}: learned features of test flows",
            seed=seed,
        )
    return {name: path.name for name, path in written.items()}


def _report_markdown(result: Mapping, title: str, plot_files: Mapping) -> str:
    metrics = result["metrics"]
    class_names = list(result["class_names"])
    lines = [
        f"# {title}",
        "",
        f"Model: `{result['model']}`. Written "
        f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
    ]

    lines += ["## Test metrics", ""]
    rows = {"test": metrics}
    if result.get("metrics_argmax") is not None:
        rows["test, argmax"] = result["metrics_argmax"]
    if result.get("val_metrics") is not None:
        rows["validation"] = result["val_metrics"]
    lines += [format_metrics_table(rows), ""]
    if metrics.get("auc_note"):
        lines += [f"AUC: {metrics['auc_note']}.", ""]
    lines += [
        f"Test log loss: {format_value(metrics['log_loss'])}. Binary counts "
        f"(attack positive): "
        + ", ".join(f"{k} {v}" for k, v in metrics["binary_counts"].items()),
        "",
    ]

    lines += ["## Per class (test)", ""]
    lines += [
        markdown_table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [name, c["precision"], c["recall"], c["f1"], c["support"]]
                for name, c in metrics["per_class"].items()
            ],
        ),
        "",
    ]

    lines += ["## Confusion matrix (test; rows true, columns predicted)", ""]
    lines += [
        markdown_table(
            ["true \\ predicted", *class_names],
            [
                [name, *row]
                for name, row in zip(
                    class_names, metrics["confusion_matrix"], strict=True
                )
            ],
        ),
        "",
    ]

    lines += ["## Operating point", ""]
    point = operating_point(result)
    if point is None:
        lines += ["No threshold: each flow gets its most probable class.", ""]
    else:
        lines += [
            f"- Threshold on the anomaly score 1 - p(normal): "
            f"{format_value(point.get('threshold'))}",
            f"- Rule: {point.get('rule')}",
        ]
        if point.get("max_false_alarm_rate") is not None:
            lines.append(
                "- False alarm bound: " + format_value(point["max_false_alarm_rate"])
            )
        for key, label in (
            ("detection_rate", "Validation detection rate"),
            ("false_alarm_rate", "Validation false alarm rate"),
            ("f1", "Validation F1 (attack vs normal)"),
        ):
            if key in point:
                lines.append(f"- {label}: {format_value(point[key])}")
        if point.get("note"):
            lines.append(f"- Note: {point['note']}")
        lines.append("")

    probe_rows = _probe_rows(result, "features + ")
    baseline = result.get("baseline")
    if probe_rows or baseline or _skipped_notes(result):
        lines += ["## Learned-feature probes and flow-statistics baseline", ""]
        rows = dict(probe_rows)
        if baseline and baseline.get("metrics") is not None:
            rows[baseline["name"]] = baseline["metrics"]
        if rows:
            lines += [format_metrics_table(rows), ""]
        lines += [f"- {note}" for note in _skipped_notes(result)]
        lines.append("")

    if result.get("timing"):
        lines += [
            "## Timing",
            "",
            markdown_table(
                ["quantity", "value"], [[k, v] for k, v in result["timing"].items()]
            ),
            "",
        ]

    if result.get("history"):
        last = result["history"][-1]
        lines += [
            "## Training",
            "",
            f"{len(result['history'])} history entries; last: "
            + ", ".join(f"{k} {format_value(v)}" for k, v in last.items()),
            "",
        ]

    if result.get("dataset"):
        lines += _dataset_section(result["dataset"])

    if plot_files:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in plot_files.items()]
        lines.append("")
    return "\n".join(lines)


def write_model_report(workdir: str | pathlib.Path, result: Mapping, config) -> None:
    """Writes report.json, report.md, config.json, test_predictions.npz and the
    PNG plots of one trained model into ``workdir`` (see the module docstring
    for ``result``; ``config`` is the resolved ConfigDict, a dict or None)."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result = complete_result(result, config)
    title = report_title(result)
    seed = int(result.get("seed", _config_seed(config)))

    write_config(workdir, config)
    np.savez_compressed(
        workdir / PREDICTIONS_NPZ,
        labels=np.asarray(result["test"]["labels"]),
        probs=np.asarray(result["test"]["probs"]),
    )
    plot_files = _write_plots(workdir, result, title, seed)

    summary = {
        "title": title,
        "model": result["model"],
        "class_names": list(result["class_names"]),
        "normal_class": int(result.get("normal_class", 0)),
        "operating_point": operating_point(result),
        "plots": plot_files,
        "predictions": PREDICTIONS_NPZ,
    }
    for key in (
        "metrics",
        "metrics_argmax",
        "val_metrics",
        "probes",
        "baseline",
        "history",
        "timing",
        "dataset",
        "seed",
    ):
        if result.get(key) is not None:
            summary[key] = result[key]
    _write_json(workdir / REPORT_JSON, summary)
    (workdir / REPORT_MD).write_text(_report_markdown(result, title, plot_files))
    logging.info("%s: %s", title, format_metrics_line(result["metrics"]))
    logging.info(
        "wrote %s and %s (%d plots) to %s",
        REPORT_MD,
        REPORT_JSON,
        len(plot_files),
        workdir,
    )


def comparison_rows(results_by_model: Mapping[str, Mapping]) -> list[dict]:
    """Rows of the comparison: each model, its feature probes, then the
    flow-statistics baseline once (from the first result that carries it).

    Each row: ``name``, ``kind`` ("model", "probe" or "baseline"), ``model``,
    ``metrics`` (a ``classification_metrics`` dict).
    """
    rows, baseline = [], None
    for name, result in results_by_model.items():
        rows.append(
            {"name": name, "kind": "model", "model": name, "metrics": result["metrics"]}
        )
        for probe_name, metrics in _probe_rows(result, f"{name} features + ").items():
            rows.append(
                {"name": probe_name, "kind": "probe", "model": name, "metrics": metrics}
            )
        if baseline is None and (result.get("baseline") or {}).get("metrics"):
            baseline = result["baseline"]
    if baseline is not None:
        rows.append(
            {
                "name": baseline["name"],
                "kind": "baseline",
                "model": None,
                "metrics": baseline["metrics"],
            }
        )
    return rows


def write_comparison(
    workdir: str | pathlib.Path,
    results_by_model: Mapping[str, Mapping],
    config,
    *,
    title: str,
) -> str:
    """Writes comparison.md, comparison.json, config.json and ROC/PR plots of all
    models into ``workdir``; returns the markdown (title line and table).

    Rows: the models, each model's learned-feature probes, and the
    flow-statistics random forest. Columns: ``COMPARISON_COLUMNS`` plus the
    decision rule and the number of test flows. Missing metrics are computed
    from each result's ``test`` flows (see ``complete_result``).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = {
        name: complete_result(result, config)
        for name, result in results_by_model.items()
    }
    title = _mark_synthetic(title, [r.get("dataset") or {} for r in results.values()])
    rows = comparison_rows(results)

    table = format_metrics_table({row["name"]: row["metrics"] for row in rows})
    notes = [
        "Precision, recall and F1 are macro averages over classes. Detection rate "
        "and false alarm rate are those of the attack-versus-normal decision; ROC "
        "and PR AUC are of the anomaly score 1 - p(normal). Each row decides by "
        "an anomaly-score threshold chosen on validation flows (max F1) where "
        "validation flows were given, else by the most probable class (Decision)."
    ]
    for result in results.values():
        notes += _skipped_notes(result)
    markdown = "\n".join([f"## {title}", "", table, "", *notes, ""])

    write_config(workdir, config)
    curves = {}
    for name, result in results.items():
        test = result.get("test")
        if test is not None:
            curve = _binary_curve(
                test["labels"], test["probs"], int(result.get("normal_class", 0))
            )
            if curve is not None:
                curves[name] = curve
    plot_files = {}
    if curves:
        from stfe_jax.evaluate import plots

        plot_files["roc_curve"] = plots.plot_roc_curves(
            curves, workdir / "comparison_roc.png", title=title
        ).name
        plot_files["pr_curve"] = plots.plot_pr_curves(
            curves, workdir / "comparison_pr.png", title=title
        ).name

    _write_json(
        workdir / COMPARISON_JSON,
        {
            "title": title,
            "columns": [key for key, _, _ in COMPARISON_COLUMNS],
            "rows": [
                {
                    "name": row["name"],
                    "kind": row["kind"],
                    "model": row["model"],
                    **{key: get(row["metrics"]) for key, _, get in COMPARISON_COLUMNS},
                    "decision": decision_label(row["metrics"]),
                    "n_flows": row["metrics"]["n_flows"],
                }
                for row in rows
            ],
            "notes": notes,
            "plots": plot_files,
        },
    )
    plot_lines = [f"![{name}]({file})" for name, file in plot_files.items()]
    (workdir / COMPARISON_MD).write_text(
        "\n".join([markdown, *plot_lines, ""]) if plot_lines else markdown
    )
    logging.info("wrote %s (%d rows) to %s", COMPARISON_MD, len(rows), workdir)
    return markdown


def load_report(workdir: str | pathlib.Path) -> dict:
    """Reads a ``report.json`` written by ``write_model_report``."""
    return json.loads((pathlib.Path(workdir) / REPORT_JSON).read_text())


__all__ = [
    "COMPARISON_COLUMNS",
    "complete_result",
    "from_training_layout",
    "comparison_rows",
    "format_metrics_line",
    "format_metrics_table",
    "format_value",
    "load_report",
    "operating_point",
    "report_title",
    "to_jsonable",
    "write_comparison",
    "write_config",
    "write_model_report",
]
