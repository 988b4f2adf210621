"""Shared pieces of the experiment scripts: provenance, tables, plots, reports.

Every script writes ``experiments/results/<name>/`` with ``report.md`` (the exact
command, the git commit and whether the tree was dirty, the machine, the date, the
tables and the plots), ``report.json`` (the same facts and every figure) and PNG
plots. The figures come from the package; this module only lays them out.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import time
import types
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from stfe_jax.evaluate.report import markdown_table, to_jsonable

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "experiments" / "results"

# (JSON key, header, getter on a classification_metrics dict), as the package's
# comparison table has them.
METRIC_COLUMNS = (
    ("accuracy", "Accuracy", lambda m: m["accuracy"]),
    ("precision", "Precision", lambda m: m["macro"]["precision"]),
    ("recall", "Recall", lambda m: m["macro"]["recall"]),
    ("f1", "F1", lambda m: m["macro"]["f1"]),
    ("detection_rate", "Detection rate", lambda m: m["detection_rate"]),
    ("false_alarm_rate", "False alarm rate", lambda m: m["false_alarm_rate"]),
    ("roc_auc", "ROC AUC", lambda m: m["roc_auc"]),
    ("pr_auc", "PR AUC", lambda m: m["pr_auc"]),
)


def _git(*args: str) -> str:
    completed = subprocess.run(
        ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip()


def provenance(argv: Sequence[str]) -> dict:
    """What made a result: the command, the commit, the machine and the date.

    ``dirty_paths`` lists the package and experiment files that differed from the
    commit when the run started (files of other parts of the tree are counted).
    """
    status = _git("status", "--porcelain").splitlines()
    ours = [
        line[3:]
        for line in status
        if line[3:].startswith(("stfe_jax/", "experiments/", "run.py"))
        and not line[3:].startswith("experiments/results/")
    ]
    import jax  # imported here: jax start-up is slow and not every caller needs it

    return {
        "command": "python "
        + shlex.join([os.path.relpath(argv[0], REPOSITORY), *argv[1:]]),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status),
        "dirty_paths": ours,
        "dirty_paths_elsewhere": len(status) - len(ours),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "jax": jax.__version__,
            "jax_devices": [str(d) for d in jax.devices()],
            "load_average_1m_at_start": os.getloadavg()[0],
        },
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }


def reporting_user_errors(main):
    """``main`` with bad input, a used workdir or an unknown config key reported
    in one line (``error: ...``, exit status 1), as run.py does, not a traceback."""
    from stfe_jax.main import USER_ERRORS

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except USER_ERRORS as error:
            sys.exit(f"error: {error}")

    return wrapped


def enable_compilation_cache(folder: str = "/tmp/stfe_experiments/jax_cache") -> None:
    """Keeps compiled XLA programs on disk, so that a model compiled for one seed
    or point is not compiled again for the next (compiling costs tens of seconds
    on a loaded 2-core machine)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def metric_values(metrics: Mapping) -> dict:
    """The comparison columns of one ``classification_metrics`` dict."""
    return {key: get(metrics) for key, _, get in METRIC_COLUMNS}


def mean_std(values: Sequence) -> dict:
    """Mean, standard deviation (ddof 0) and count of the values that are set.

    ``None`` and NaN (an undefined metric, such as an AUC with one class) are left
    out; with none left the mean and std are None.
    """
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept)), "n": len(kept)}


def format_mean_std(summary: Mapping) -> str:
    """``0.9123 ± 0.0100`` (or ``n/a``), the count added when runs were missing."""
    if summary["mean"] is None:
        return "n/a"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f}"


def summarize_runs(runs: Mapping[str, Sequence[Mapping]]) -> dict:
    """Per row name, the mean and std of each metric column over its runs.

    ``runs`` maps a row name to the ``classification_metrics`` dicts of its runs
    (one per seed).
    """
    summary = {}
    for name, metrics_list in runs.items():
        values = [metric_values(m) for m in metrics_list]
        summary[name] = {
            key: mean_std([v[key] for v in values]) for key, _, _ in METRIC_COLUMNS
        }
        summary[name]["runs"] = len(metrics_list)
    return summary


def summary_table(summary: Mapping[str, Mapping]) -> str:
    """Markdown: one row per name, ``mean ± std`` per metric column, run count."""
    header = ["", *(h for _, h, _ in METRIC_COLUMNS), "Runs"]
    rows = [
        [name, *(format_mean_std(s[key]) for key, _, _ in METRIC_COLUMNS), s["runs"]]
        for name, s in summary.items()
    ]
    return markdown_table(header, rows)


def bar_plot(
    path: pathlib.Path,
    summary: Mapping[str, Mapping],
    keys: Sequence[str],
    title: str,
) -> pathlib.Path:
    """Grouped bars of the mean of each metric ``keys`` per row, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = list(summary)
    figure, axes = pyplot.subplots(figsize=(max(6.0, 1.1 * len(names) + 3), 4.2))
    width = 0.8 / max(1, len(keys))
    for k, key in enumerate(keys):
        means = [summary[n][key]["mean"] for n in names]
        stds = [summary[n][key]["std"] for n in names]
        axes.bar(
            np.arange(len(names)) + k * width,
            [np.nan if m is None else m for m in means],
            width,
            yerr=[0.0 if s is None else s for s in stds],
            capsize=3,
            label=key,
        )
    axes.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    axes.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    axes.set_ylim(0.0, 1.05)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def line_plot(
    path: pathlib.Path,
    x_labels: Sequence,
    series: Mapping[str, Sequence],
    title: str,
    x_name: str,
) -> pathlib.Path:
    """One line per series over the points ``x_labels`` (None values left out)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.0, 4.0))
    positions = np.arange(len(x_labels))
    for name, values in series.items():
        values = np.array([np.nan if v is None else v for v in values], float)
        axes.plot(positions, values, marker="o", label=name)
    axes.set_xticks(positions)
    axes.set_xticklabels([str(x) for x in x_labels], rotation=20, fontsize=8)
    axes.set_xlabel(x_name)
    axes.set_ylim(0.0, 1.05)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def cap_per_capture(data, limit: int, seed: int, fractions=(0.7, 0.1, 0.2)):
    """``data`` (a ``stfe_jax.main.PreparedData``) with at most ``limit`` flows of
    each capture (drawn at random with ``seed``; 0: all), those split again by
    capture file with ``fractions``. Unlabelled flows are left out."""
    from stfe_jax.store import splits
    from stfe_jax.train import Dataset

    labels = data.dataset.labels
    capture_index = np.asarray(data.store.column("capture_index")[:])
    start_ns = np.asarray(data.store.column("start_ns")[:])
    order = np.random.default_rng(seed).permutation(np.flatnonzero(labels >= 0))
    if limit > 0:
        by_capture = np.argsort(capture_index[order], kind="stable")
        sorted_captures = capture_index[order][by_capture]
        rank = np.arange(order.size) - np.searchsorted(
            sorted_captures, sorted_captures, side="left"
        )
        order = order[by_capture][rank < limit]
    kept = np.sort(order)
    side = splits.assign_split(
        start_ns[kept],
        capture_index[kept],
        policy="capture",
        seed=seed,
        fractions=tuple(fractions),
    )
    dataset = Dataset(
        arrays=data.dataset.arrays,
        labels=labels,
        class_names=data.dataset.class_names,
        train_idx=kept[side == 0],
        val_idx=kept[side == 1],
        test_idx=kept[side == 2],
    )
    capped = types.SimpleNamespace(**vars(data))
    capped.dataset = dataset
    capped.duplicate_share = float(
        splits.duplicate_share(
            data.store.column("packets"), dataset.train_idx, dataset.test_idx
        )
    )
    logging.info(
        "capped at %d flows per capture: %d flows (train %d, val %d, test %d), "
        "%.1f%% of test tensors also in train",
        limit,
        kept.size,
        dataset.train_idx.size,
        dataset.val_idx.size,
        dataset.test_idx.size,
        100 * capped.duplicate_share,
    )
    return capped


def sliced_arrays(wide: dict, packets_per_flow: int, bytes_per_packet: int) -> dict:
    """The model columns of a wide store cut down to P packets and B bytes.

    ``wide`` holds numpy columns of a store cut at more packets and bytes with
    the same masking; the first P packets and B bytes of each sample are what a
    store cut at P x B holds.
    """
    p, b = packets_per_flow, bytes_per_packet
    return {
        "packets": wide["packets"][:, :p, :b],
        "packet_caplen": wide["packet_caplen"][:, :p],
        "direction": wide["direction"][:, :p],
        "iat_s": wide["iat_s"][:, :p],
        "n_packets": np.minimum(wide["n_packets"], p).astype(np.int32),
    }


def _sharing(machine: Mapping) -> str:
    """Words for the load at start: other jobs ran when it passed the CPU count."""
    if machine["load_average_1m_at_start"] > machine["cpu_count"]:
        return " (other jobs shared the machine)"
    return ""


class Report:
    """Collects the sections of one experiment's report and writes it.

    Usage: ``report = Report(out_dir, title, argv)``; ``report.add(markdown)`` and
    ``report.data[key] = ...`` as results arrive; ``report.write()`` after each
    part, so that an interrupted run leaves what it finished.
    """

    def __init__(self, out_dir: str | pathlib.Path, title: str, argv: Sequence[str]):
        self.out_dir = pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.provenance = provenance(argv)
        self.started = time.perf_counter()
        self.sections: list[str] = []
        self.keys: dict[str, int] = {}
        self.data: dict = {}

    def add(self, markdown: str, key: str | None = None) -> None:
        """Appends a markdown section (a heading, a table, a note); a section
        added again under the same ``key`` replaces the earlier one in place."""
        if key is not None and key in self.keys:
            self.sections[self.keys[key]] = markdown
            return
        if key is not None:
            self.keys[key] = len(self.sections)
        self.sections.append(markdown)

    def write(self, finished: bool = False) -> pathlib.Path:
        """Writes report.md and report.json; returns the markdown path."""
        elapsed = time.perf_counter() - self.started
        p = self.provenance
        dirty = (
            "clean"
            if not p["git_dirty"]
            else (
                "dirty: package/experiment files changed: "
                + (", ".join(p["dirty_paths"]) if p["dirty_paths"] else "none")
                + f"; {p['dirty_paths_elsewhere']} other paths changed"
            )
        )
        machine = p["machine"]
        header = [
            f"# {self.title}",
            "",
            "Generated by the command below; every figure here is what it wrote.",
            "",
            "```",
            p["command"],
            "```",
            "",
            f"- Commit: `{p['git_commit']}` ({dirty})",
            f"- Machine: {machine['cpu_count']} CPUs, {machine['platform']}, "
            f"Python {machine['python']}, jax {machine['jax']}, devices "
            f"{', '.join(machine['jax_devices'])}; 1-minute load average at start "
            f"{machine['load_average_1m_at_start']:.1f}{_sharing(machine)}",
            f"- Started: {p['date_utc']} UTC; "
            + ("ran" if finished else "so far")
            + f" {elapsed / 60:.1f} min",
            "",
        ]
        markdown = "\n".join([*header, *self.sections, ""])
        path = self.out_dir / "report.md"
        path.write_text(markdown)
        document = {
            "title": self.title,
            "provenance": p,
            "elapsed_s": elapsed,
            "finished": finished,
            **self.data,
        }
        (self.out_dir / "report.json").write_text(
            json.dumps(to_jsonable(document), indent=2, allow_nan=False) + "\n"
        )
        return path
