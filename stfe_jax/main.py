"""The jobs behind ``run.py``: captures -> store -> labels -> split -> train -> report.

Each job is a plain function of a ``JobOptions`` so that tests reach every line that
the command line reaches.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import logging as stdlib_logging
import os
import pathlib
import time
from collections.abc import Sequence

import numpy as np
from absl import logging

MODEL_NAMES = ("mlp", "cnn", "lstm", "cnn_lstm")

# Errors that mean the input or the request was wrong, not the code: run.py prints
# their message without a traceback. Every error class of the package that names a
# file, line or setting derives from one of these.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


@dataclasses.dataclass
class JobOptions:
    """What one run of ``run.py`` was asked to do (see run.py's flags)."""

    mode: str = "train"
    model: str = "cnn_lstm"
    captures: Sequence[str] = ()
    labels: Sequence[str] = ()
    store: str | None = None
    workdir: str | None = None
    overrides: Sequence[str] = ()
    tiny: bool = False
    resume: bool = False
    synthetic_scale: float = 1.0
    synthetic_seed: int = 0
    scheduler: str | None = None
    workers: int | None = None
    day: str | None = None
    checkpoint: str | None = None
    interface: str | None = None
    capture_filter: str | None = None
    threshold: float | None = None
    explain: int = 0


class _QuietLibraryInfo(stdlib_logging.Filter):
    """Drops INFO lines of libraries that log every checkpoint step (Orbax)."""

    def filter(self, record: stdlib_logging.LogRecord) -> bool:
        noisy = "/orbax/" in record.pathname or "/etils/" in record.pathname
        return record.levelno > stdlib_logging.INFO or not noisy


def quiet_library_logs() -> None:
    """Keeps the log to what a person watching a run wants: ours, and warnings."""
    logging.get_absl_handler().addFilter(_QuietLibraryInfo())


def run(flag_values) -> None:
    """Runs the job that ``run.py``'s parsed flags describe."""
    quiet_library_logs()
    options = JobOptions(
        mode=flag_values.mode,
        model=flag_values.model,
        captures=list(flag_values.captures),
        labels=list(flag_values.labels),
        store=flag_values.store,
        workdir=flag_values.workdir,
        overrides=list(flag_values.set),
        tiny=flag_values.tiny,
        resume=flag_values.resume,
        synthetic_scale=flag_values.synthetic_scale,
        synthetic_seed=flag_values.synthetic_seed,
        scheduler=flag_values.scheduler,
        workers=flag_values.workers,
        day=flag_values.day,
        checkpoint=flag_values.checkpoint,
        interface=flag_values.interface,
        capture_filter=flag_values.capture_filter,
        threshold=flag_values.threshold,
        explain=flag_values.explain,
    )
    if options.mode == "train":
        train_job(options)
    elif options.mode == "preprocess":
        preprocess_job(options)
    elif options.mode == "detect":
        from stfe_jax.detect import job as detect_job

        detect_job.run(options)
    elif options.mode == "fetch":
        fetch_job(options)
    else:
        raise ValueError(f"unknown mode {options.mode!r}")


def expand_captures(patterns: Sequence[str]) -> list[str]:
    """Capture paths from file names and globs, sorted, each pattern required to match.

    Raises:
      FileNotFoundError: a pattern that names no existing file.
    """
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            raise IsADirectoryError(
                f"--captures {pattern!r} is a directory; name its files, e.g. "
                f"'{os.path.join(pattern, '*.pcap')}'"
            )
        matches = sorted(glob.glob(pattern, recursive=True))
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise FileNotFoundError(f"--captures {pattern!r} matches no file")
        paths.extend(matches)
    return sorted(dict.fromkeys(os.path.abspath(p) for p in paths))


def check_label_files(label_paths: Sequence[str], labels_config) -> None:
    """Reads every label file once before the long work, so a bad one fails fast.

    Raises:
      FileNotFoundError: a label file that does not exist.
      ValueError: a file of no known kind, or a row that fits no known shape (the
        label readers' errors name the file and line).
    """
    from stfe_jax import labels as labels_lib
    from stfe_jax.labels import cic, mawilab, per_capture

    for path in label_paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--labels {path!r}: no such file")
        kind = labels_lib.detect_kind(path)
        if kind.startswith("mawilab"):
            mawilab.read_mawilab(path)
        elif kind == "capture_classes":
            per_capture.read_manifest(path)
        elif kind == "cic_csv":
            cic.read_cic_csv(path, labels_config.get("cic_timezone", "-03:00"))


def open_given_store(options: JobOptions, config):
    """Opens ``--store``; its flows config becomes the job's.

    A ``--set=flows.*`` override that the store was not cut with is refused:
    training would silently use the store's tensors while the written config
    claimed otherwise.
    """
    from stfe_jax import store as store_lib

    if any(o.strip().startswith("flows.") for o in options.overrides):
        store = store_lib.Store.open(options.store, expect_flows_config=config.flows)
    else:
        store = store_lib.Store.open(options.store)
    adopt_store_flows(config, store)
    return store


def adopt_store_flows(config, store) -> None:
    """Sets ``config.flows`` to the flows config the store was cut with."""
    for key, value in store.manifest["flows_config"].items():
        config.flows[key] = value


def captures_named_by_manifests(label_paths: Sequence[str]) -> list[str]:
    """The existing capture files that per-capture class manifests name exactly.

    Lets ``--labels=labels.csv`` alone stand for "these captures, these classes".
    Glob rows and rows naming missing files are left out (the label report counts
    them).
    """
    from stfe_jax import labels as labels_lib
    from stfe_jax.labels import per_capture

    captures = []
    for path in label_paths:
        if labels_lib.detect_kind(path) != "capture_classes":
            continue
        missing = []
        for row in per_capture.read_manifest(path):
            if row.is_glob:
                continue
            if os.path.isfile(row.pattern):
                captures.append(row.pattern)
            else:
                missing.append(f"line {row.line}: {row.pattern}")
        if missing:
            logging.warning(
                "%s: %d captures named here do not exist (first: %s)",
                path,
                len(missing),
                missing[0],
            )
    return sorted(dict.fromkeys(captures))


def model_names(model: str) -> list[str]:
    """The models that ``--model`` names: one of MODEL_NAMES, or all four."""
    if model == "all":
        return list(MODEL_NAMES)
    if model not in MODEL_NAMES:
        raise ValueError(f"--model={model!r}: expected one of {MODEL_NAMES} or 'all'")
    return [model]


def load_config(model: str, options: JobOptions):
    """The config of one model with the job's overrides applied."""
    from stfe_jax import configs

    config = configs.get_config(model, tiny=options.tiny)
    configs.apply_overrides(config, list(options.overrides))
    return config


def default_workdir(options: JobOptions) -> pathlib.Path:
    """``runs/<UTC time>-<model>`` below the current directory."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return pathlib.Path("runs") / f"{stamp}-{options.model}"


@dataclasses.dataclass
class PreparedData:
    """A store with a label and split for every flow, ready to train on."""

    store: object
    dataset: object
    title: str
    synthetic: bool
    label_report: dict
    duplicate_share: float


def _synthetic_inputs(options: JobOptions, workdir: pathlib.Path):
    from stfe_jax.synth import mawi_day

    logging.info(
        "No --captures given: generating the built-in MAWI-like day. It is SYNTHETIC "
        "traffic made by stfe_jax.synth, a pipeline check, never evidence."
    )
    day = mawi_day.generate_day(
        workdir / "synthetic_day",
        seed=options.synthetic_seed,
        scale=options.synthetic_scale,
    )
    return [str(day.capture_path)], [str(p) for p in day.label_paths]


def prepare_data(options: JobOptions, config, workdir: pathlib.Path) -> PreparedData:
    """Builds (or opens) the store, labels every flow and assigns the split."""
    from stfe_jax import labels as labels_lib
    from stfe_jax.store import splits
    from stfe_jax.train import Dataset

    synthetic = False
    label_paths = list(options.labels)
    check_label_files(label_paths, config.labels)
    if options.store:
        store = open_given_store(options, config)
    else:
        if options.captures:
            captures = expand_captures(options.captures)
        elif label_paths:
            captures = captures_named_by_manifests(label_paths)
            if not captures:
                raise FileNotFoundError(
                    "--labels given without --captures, and no per-capture label "
                    "file names a capture that exists: pass --captures"
                )
            logging.info(
                "No --captures given: reading the %d captures that the per-capture "
                "label files name",
                len(captures),
            )
        else:
            synthetic = True
            captures, label_paths = _synthetic_inputs(options, workdir)
        started = time.perf_counter()
        store = build_store(options, captures, workdir / "store", config)
        report_capture_problems(store)
        logging.info(
            "Store of %d flows from %d captures built in %.1f s",
            store.num_flows,
            len(captures),
            time.perf_counter() - started,
        )
    meta = {name: store.column(name)[:] for name in _FLOW_META_COLUMNS}
    labelled = labels_lib.label_flows(meta, store.captures, label_paths, config.labels)
    class_id = np.asarray(labelled.class_id, dtype=np.int32)
    store.write_side_array("class_id", class_id)
    store.write_side_json(
        "labels",
        {"class_names": list(labelled.class_names), "report": labelled.report},
    )
    _write_label_side_data(store, labelled.side)

    split = splits.assign_split(
        meta["start_ns"],
        meta["capture_index"],
        policy=config.split.policy,
        seed=config.split.seed,
        fractions=tuple(config.split.fractions),
    )
    split = np.where(class_id < 0, -1, split).astype(np.int8)
    store.write_side_array("split", split)
    train_idx, val_idx, test_idx = (np.flatnonzero(split == s) for s in (0, 1, 2))
    packets = store.column("packets")
    duplicate_share = float(splits.duplicate_share(packets, train_idx, test_idx))
    _log_dataset(labelled.class_names, class_id, split, duplicate_share)

    arrays = {name: store.column(name) for name in _SAMPLE_AND_FLOW_COLUMNS}
    dataset = Dataset(
        arrays=arrays,
        labels=class_id,
        class_names=list(labelled.class_names),
        train_idx=train_idx,
        val_idx=val_idx,
        test_idx=test_idx,
    )
    title = (
        "SYNTHETIC MAWI-like day (pipeline check, not evidence)"
        if synthetic
        else "Captures: "
        + ", ".join(os.path.basename(p) for p in store.captures[:3])
        + (f" and {len(store.captures) - 3} more" if len(store.captures) > 3 else "")
    )
    return PreparedData(
        store=store,
        dataset=dataset,
        title=title,
        synthetic=synthetic,
        label_report=labelled.report,
        duplicate_share=duplicate_share,
    )


_FLOW_META_COLUMNS = (
    "start_ns",
    "end_ns",
    "protocol",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "capture_index",
    "packet_count",
    "fwd_packet_count",
)
_SAMPLE_AND_FLOW_COLUMNS = (
    "packets",
    "packet_caplen",
    "direction",
    "iat_s",
    "n_packets",
    "start_ns",
    "end_ns",
    "protocol",
    "packet_count",
    "byte_count",
    "fwd_packet_count",
    "tcp_flags_seen",
)


def _write_label_side_data(store, side: dict) -> None:
    """Keeps what each label source said of each flow beside the store."""
    documents = {}
    for name, value in side.items():
        array = np.asarray(value) if not isinstance(value, dict) else None
        if array is not None and array.ndim >= 1 and len(array) == store.num_flows:
            if array.dtype == object or array.dtype.kind == "U":
                array = array.astype(str).astype("S")
            store.write_side_array(f"label_{name}", array)
        else:
            documents[name] = value
    if documents:
        store.write_side_json("label_side", documents)


def _log_dataset(class_names, class_id, split, duplicate_share) -> None:
    for s, name in enumerate(("train", "validation", "test")):
        in_split = class_id[split == s]
        counts = {
            class_names[c]: int(np.sum(in_split == c)) for c in range(len(class_names))
        }
        logging.info("%s split: %d flows %s", name, in_split.size, counts)
    logging.info(
        "Share of test tensors byte-identical to a training tensor: %.1f%%",
        100.0 * duplicate_share,
    )


def train_job(options: JobOptions) -> dict:
    """Trains and evaluates the models ``options.model`` names; returns their results.

    Writes, below the workdir: ``store/`` (unless --store), one folder per model with
    ``report.json``, ``report.md``, ``config.json``, plots and checkpoints, and with
    several models ``comparison.md`` / ``comparison.json``.
    """
    from stfe_jax.evaluate import report
    from stfe_jax.train import train_and_evaluate

    names = model_names(options.model)
    workdir = (
        pathlib.Path(options.workdir) if options.workdir else default_workdir(options)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    logging.info("Workdir: %s", workdir.resolve())

    provenance = job_provenance(options)
    base_config = load_config(names[0], options)
    data = prepare_data(options, base_config, workdir)
    baseline = flow_statistics_baseline(data, base_config)

    results = {}
    for name in names:
        config = load_config(name, options)
        adopt_store_flows(config, data.store)
        model_dir = workdir / name if len(names) > 1 else workdir
        logging.info("Training %s", name)
        trained = train_and_evaluate(
            config, data.dataset, model_dir, resume=options.resume
        )
        write_preprocessing_record(model_dir / "checkpoints", data, config)
        result = report_result(name, trained, data, config, baseline)
        result = report.complete_result(result, config)
        report.write_model_report(model_dir, result, config)
        results[name] = result

    table = report.write_comparison(workdir, results, base_config, title=data.title)
    print(table)
    provenance["finished_utc"] = datetime.datetime.now(datetime.UTC).isoformat()
    with open(workdir / "job.json", "w") as f:
        json.dump(provenance, f, indent=2, default=str)
    return results


def job_provenance(options: JobOptions) -> dict:
    """The command line, options, commit (at the job's start), machine and date."""
    import platform
    import subprocess
    import sys

    import jax

    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                ["git", *args],
                cwd=pathlib.Path(__file__).resolve().parents[1],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return completed.stdout.strip() if completed.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    record = {
        "command": " ".join(["python", *sys.argv]),
        "options": dataclasses.asdict(options),
        "git_commit": git("rev-parse", "HEAD"),
        "git_tree_dirty": None if status is None else bool(status),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    return record


PREPROCESSING_RECORD = "preprocessing.json"


def write_preprocessing_record(checkpoint_dir: pathlib.Path, data, config) -> None:
    """Records beside a checkpoint how its flows were cut and labelled.

    Detection reads it to cut new captures exactly as in training and to refuse a
    checkpoint whose store format it does not know.
    """
    from stfe_jax.store import layout

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "store_format": layout.FORMAT_NAME,
        "store_format_version": layout.FORMAT_VERSION,
        "flows": data.store.manifest.get("flows_config", config.flows.to_dict()),
        "class_names": list(data.dataset.class_names),
        "normal_class": int(data.dataset.normal_class),
        "labels": config.labels.to_dict(),
        "model": {
            **config.model.to_dict(),
            "num_classes": len(data.dataset.class_names),
        },
        "synthetic": data.synthetic,
    }
    layout.write_json_atomic(checkpoint_dir / PREPROCESSING_RECORD, record)


def flow_statistics_baseline(data: PreparedData, config) -> dict:
    """The random forest on hand-made flow statistics, trained on the same split."""
    from stfe_jax.evaluate import flow_statistics

    dataset = data.dataset
    started = time.perf_counter()
    baseline = flow_statistics.flow_statistics_baseline(
        dataset.arrays,
        dataset.labels,
        dataset.train_idx,
        dataset.test_idx,
        dataset.class_names,
        seed=config.split.seed,
        normal_class=dataset.normal_class,
        val_idx=dataset.val_idx,
    )
    logging.info(
        "Flow-statistics random forest fitted in %.1f s", time.perf_counter() - started
    )
    return baseline


def report_result(name: str, trained: dict, data: PreparedData, config, baseline):
    """The result dict that ``evaluate.report`` reads, from a training result."""
    dataset = data.dataset
    splits = trained.get("splits") or {}
    result = {
        "model": name,
        "title": f"{name} on {data.title}",
        "class_names": list(trained["class_names"]),
        "normal_class": int(trained["normal_class"]),
        "threshold": trained.get("threshold"),
        "history": trained.get("history"),
        "timing": trained.get("timings"),
        "baseline": baseline,
        "seed": int(config.split.seed),
        "dataset": {
            "name": data.title,
            "synthetic": data.synthetic,
            "store": str(getattr(data.store, "path", "")),
            "captures": len(data.store.captures),
            "flows_per_split": _flows_per_split(dataset),
            "split_policy": config.split.policy,
            "duplicate_share_test_in_train": data.duplicate_share,
            "label_report": data.label_report,
            "label_policy": config.labels.to_dict(),
        },
    }
    for split in ("val", "test"):
        if split in splits:
            result[split] = {
                "labels": splits[split]["labels"],
                "probs": splits[split]["probs"],
            }
    if "train" in splits and "test" in splits:
        result["features"] = {
            "train": splits["train"]["features"],
            "train_labels": splits["train"]["labels"],
            "test": splits["test"]["features"],
            "test_labels": splits["test"]["labels"],
        }
        if "val" in splits:
            result["features"].update(
                val=splits["val"]["features"], val_labels=splits["val"]["labels"]
            )
    return result


def _flows_per_split(dataset) -> dict:
    names = dataset.class_names
    counts = {}
    for split, indices in (
        ("train", dataset.train_idx),
        ("validation", dataset.val_idx),
        ("test", dataset.test_idx),
    ):
        labels = dataset.labels[indices]
        counts[split] = {names[c]: int(np.sum(labels == c)) for c in range(len(names))}
    return counts


def build_store(options: JobOptions, captures, store_dir: pathlib.Path, config):
    """Builds the store in this process, or on Dask with --scheduler/--workers."""
    from stfe_jax import store as store_lib

    if options.scheduler or options.workers:
        from stfe_jax.distributed import preprocess_captures

        preprocess_captures(
            captures,
            store_dir,
            config.flows,
            scheduler=options.scheduler,
            workers=options.workers,
        )
        return store_lib.Store.open(store_dir, expect_flows_config=config.flows)
    return store_lib.build_store(captures, store_dir, config.flows)


def preprocess_job(options: JobOptions) -> None:
    """Builds the store from ``--captures`` (or the synthetic day) and stops."""

    config = load_config(model_names(options.model)[0], options)
    workdir = (
        pathlib.Path(options.workdir) if options.workdir else default_workdir(options)
    )
    if options.captures:
        captures = expand_captures(options.captures)
    else:
        captures, _ = _synthetic_inputs(options, workdir)
    store = build_store(options, captures, workdir / "store", config)
    failed = report_capture_problems(store)
    logging.info("Store of %d flows written to %s", store.num_flows, workdir / "store")
    if failed == len(store.captures):
        raise ValueError(
            f"none of the {failed} captures could be read (see the warnings above "
            f"and {workdir / 'store' / 'manifest.json'})"
        )


def report_capture_problems(store) -> int:
    """Logs each capture that was damaged or unreadable; returns how many had errors."""
    failed = 0
    for record in store.manifest["captures"]:
        if record.get("error"):
            failed += 1
            logging.warning(
                "capture %s: read %d packets, then stopped: %s",
                record["path"],
                record.get("packets_read", 0),
                record["error"],
            )
        for warning in record.get("warnings") or []:
            logging.warning("capture %s: %s", record["path"], warning)
    return failed


def fetch_job(options: JobOptions) -> None:
    """Downloads a MAWI day's trace and its MAWILab label files."""
    from stfe_jax.labels import fetch

    if not options.day:
        raise ValueError("--mode=fetch needs --day=YYYYMMDD")
    out_dir = pathlib.Path(options.workdir or f"mawi/{options.day}")
    fetch.fetch_mawi_day(options.day, out_dir)
