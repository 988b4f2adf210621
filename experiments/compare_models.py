"""The four models on one split and budget, over several seeds, with error bars.

For each seed (the seed sets the split, the initialisation and the batch order)
the MLP, CNN, LSTM and CNN-LSTM train on the same flows with the same step budget;
each also feeds its learned features to a logistic regression and a random forest,
and a random forest on hand-made flow statistics trains on the same split. The
table gives the mean and standard deviation over seeds.

Datasets (``--dataset``):

- ``corpus``: the real capture corpus (a per-capture class CSV). Binary normal
  versus attack with the split by capture file; then one class per capture class
  (a class with fewer than ``--min_test_captures`` test captures is listed, not
  scored); then leave-one-source-out (each of the largest sources in turn is the
  whole test set).
- ``synthetic``: the embedded MAWI-like day (a pipeline check, not evidence), and
  training on one generated day while testing on another.
- ``cic``: the CIC-IDS2017 slice, label matching only (see label_matching.py).

  python experiments/compare_models.py --dataset=synthetic
  python experiments/compare_models.py --dataset=corpus --steps=600
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
import types

import numpy as np
from absl import app, flags, logging

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # common.py, then stfe_jax

import common  # noqa: E402  (the experiments folder, put on the path above)
import label_matching  # noqa: E402  (defines the --cic_* flags)

from stfe_jax import main as job  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "synthetic", ["synthetic", "corpus", "cic"], "Data.")
flags.DEFINE_string(
    "labels",
    "../shared/datasets/capture-corpus/labels.csv",
    "corpus: the per-capture class CSV (its captures are read).",
)
flags.DEFINE_list("models", list(job.MODEL_NAMES), "Models to compare.")
flags.DEFINE_integer("seeds", 3, "Seeds 0..N-1 (split, initialisation, batch order).")
flags.DEFINE_list(
    "seed_list",
    [],
    "Run exactly these seeds instead (binary, multiclass, same-day parts), e.g. to "
    "spread seeds over processes and join them with --merge.",
)
flags.DEFINE_list(
    "merge",
    [],
    "Result folders of runs over other seeds (same data and budget) to join into "
    "one table in --out; nothing is trained.",
)
flags.DEFINE_integer("steps", 600, "Training steps per model and seed (the budget).")
flags.DEFINE_integer("batch_size", 128, "Training batch size (flows per step).")
flags.DEFINE_integer(
    "feature_flows",
    5000,
    "Training flows whose learned features fit the probes (eval.max_feature_flows).",
)
flags.DEFINE_bool("tiny", False, "The tiny config (small flows and layers; tests).")
flags.DEFINE_multi_string("set", [], "Further config overrides KEY=VALUE.")
flags.DEFINE_list(
    "parts",
    ["binary", "multiclass", "loso", "same_day", "cross_day"],
    "Parts to run: corpus binary, multiclass, loso; synthetic same_day, cross_day.",
)
flags.DEFINE_string(
    "store",
    None,
    "corpus: an existing store of the corpus's captures to reuse (default: build "
    "one in --workdir).",
)
flags.DEFINE_integer("multiclass_seeds", 3, "corpus: seeds of the multi-class part.")
flags.DEFINE_integer(
    "min_test_captures", 5, "corpus: fewer test captures and a class is not scored."
)
flags.DEFINE_integer(
    "loso_sources", 6, "corpus: hold out each of the N largest sources (0: none)."
)
flags.DEFINE_integer(
    "max_flows_per_capture",
    50,
    "corpus: at most N flows of each capture, drawn per seed (0: all). A few "
    "captures hold thousands of flows, most hold one; the cap keeps them from "
    "filling the training and test sets.",
)
flags.DEFINE_list(
    "loso_models", list(job.MODEL_NAMES), "corpus: models of leave-one-source-out."
)
flags.DEFINE_float("synthetic_scale", 1.0, "synthetic: size of each generated day.")
flags.DEFINE_integer(
    "cross_day_seeds",
    3,
    "synthetic: seeds of training on one generated day and testing on another "
    "(0: none).",
)
flags.DEFINE_string("out", None, "Result folder (default experiments/results/...).")
flags.DEFINE_string(
    "workdir", None, "Scratch folder for stores and checkpoints (default /tmp/...)."
)


def _overrides(model: str, seed: int) -> list[str]:
    """The config overrides of one run: the budget, the seed, then --set."""
    return [
        f"train.steps={FLAGS.steps}",
        f"train.batch_size={FLAGS.batch_size}",
        f"train.eval_every={max(1, FLAGS.steps // 4)}",
        "train.early_stopping_patience=0",
        f"train.seed={seed}",
        f"split.seed={seed}",
        f"eval.max_feature_flows={FLAGS.feature_flows}",
        *FLAGS.set,
    ]


def _seeds(count: int) -> list[int]:
    """``--seed_list`` when given, else seeds 0..count-1."""
    return [int(s) for s in FLAGS.seed_list] or list(range(count))


def _config(model: str, seed: int, extra=()):
    options = job.JobOptions(
        tiny=FLAGS.tiny, overrides=[*_overrides(model, seed), *extra]
    )
    return job.load_config(model, options)


def train_models(data, models, seed, workdir: pathlib.Path, extra=()) -> dict:
    """Trains each model on ``data``'s split; returns completed results by name.

    Each result holds test metrics, the probes of its learned features and the
    flow-statistics forest (fitted once per call, on the same split).
    """
    from stfe_jax.evaluate import report
    from stfe_jax.train import train_and_evaluate

    base = _config(models[0], seed, extra)
    baseline = job.flow_statistics_baseline(data, base)
    results = {}
    for name in models:
        config = _config(name, seed, extra)
        started = time.perf_counter()
        trained = train_and_evaluate(config, data.dataset, workdir / f"{name}-s{seed}")
        result = job.report_result(name, trained, data, config, baseline)
        result = report.complete_result(result, config)
        result["wall_s"] = time.perf_counter() - started
        logging.info(
            "seed %d %s: %s (%.0f s)",
            seed,
            name,
            report.format_metrics_line(result["metrics"]),
            result["wall_s"],
        )
        results[name] = result
    return results


def collect_rows(results: dict, runs: dict) -> None:
    """Appends each row's test metrics (models, probes, forest) to ``runs``."""
    from stfe_jax.evaluate import report

    for row in report.comparison_rows(results):
        runs.setdefault(row["name"], []).append(row["metrics"])


def write_seed_comparison(out_dir, results, config, title) -> None:
    """The package's comparison table and ROC/PR plots of one seed's results."""
    from stfe_jax.evaluate import report

    report.write_comparison(out_dir, results, config, title=title)


def prepare(options, config, workdir):
    """``stfe_jax.main.prepare_data`` (builds the store once, relabels after)."""
    started = time.perf_counter()
    data = job.prepare_data(options, config, workdir)
    logging.info("prepared data in %.1f s", time.perf_counter() - started)
    return data


def split_counts(data) -> dict:
    """Flows per split and class, as the main job reports them."""
    return job._flows_per_split(data.dataset)


def compare_over_seeds(
    report_doc, part: str, heading: str, make_data, seeds, models, scratch, extra=()
):
    """Runs the models over ``seeds``; adds a mean ± std table and a plot,
    rewritten after every seed so that an interrupted run keeps what it did."""
    runs, per_seed, split_info = {}, {}, {}
    for seed in seeds:
        data = make_data(seed)
        results = train_models(data, models, seed, scratch / part, extra)
        if seed == seeds[0]:
            write_seed_comparison(
                report_doc.out_dir / part,
                results,
                _config(models[0], seed, extra),
                title=f"{heading}, seed {seed}",
            )
        collect_rows(results, runs)
        values = {
            name: [common.metric_values(m) for m in metrics_list]
            for name, metrics_list in runs.items()
        }
        per_seed[seed] = {
            name: {
                **common.metric_values(r["metrics"]),
                "wall_s": r["wall_s"],
                "timing": r.get("timing"),
            }
            for name, r in results.items()
        }
        split_info[seed] = split_counts(data)
        summary = common.summarize_runs(runs)
        report_doc.data[part] = {
            "heading": heading,
            "seeds": list(per_seed),
            "runs": values,
            "summary": summary,
            "per_seed": per_seed,
            "flows_per_split": split_info,
        }
        done = list(per_seed)
        plot = common.bar_plot(
            report_doc.out_dir / f"{part}.png",
            summary,
            ["f1", "roc_auc", "pr_auc"],
            heading,
        )
        report_doc.add(
            "\n".join(
                [
                    f"## {heading}",
                    "",
                    f"Mean ± standard deviation over seeds {done}"
                    + ("" if len(done) == len(seeds) else f" of {list(seeds)}")
                    + " (seed = split, initialisation and batch order). Rows: the "
                    "models, each model's learned features into a logistic "
                    "regression and a random forest, and the random forest on flow "
                    "statistics. Precision, recall and F1 are macro averages over "
                    "classes; detection and false alarm rates are of the "
                    "attack-versus-normal decision at the threshold chosen on "
                    "validation flows; AUCs are of the anomaly score 1 - p(normal).",
                    "",
                    common.summary_table(summary),
                    "",
                    f"Flows per split (seed {seeds[0]}): "
                    + "; ".join(
                        f"{s}: " + ", ".join(f"{c} {n}" for c, n in counts.items())
                        for s, counts in split_info[seeds[0]].items()
                    ),
                    "",
                    f"Seed {seeds[0]}'s table and ROC/PR curves: "
                    f"[{part}/comparison.md]({part}/comparison.md)",
                    "",
                    f"![{part}]({plot.name})",
                    "",
                ]
            ),
            key=part,
        )
        report_doc.write()
    return summary


# --- corpus -----------------------------------------------------------------


def capture_sources(store, labels_path: str) -> np.ndarray:
    """The ``source`` of each store capture, from the manifest ('' if none)."""
    import os

    from stfe_jax.labels import per_capture

    by_path = {
        os.path.normpath(row.pattern): row.extra.get("source", "")
        for row in per_capture.read_manifest(labels_path)
        if not row.is_glob
    }
    return np.array(
        [by_path.get(os.path.normpath(p), "") for p in store.captures], dtype=object
    )


def multiclass_part(report_doc, options, scratch, store_path, models):
    """One class per capture class; scores classes with enough test captures."""
    extra = ("labels.policy=family",)
    runs, per_seed, listed = {}, {}, {}
    seeds = _seeds(FLAGS.multiclass_seeds)
    for seed in seeds:
        config = _config(models[0], seed, extra)
        data = common.cap_per_capture(
            prepare(
                job.JobOptions(store=store_path, labels=options.labels), config, scratch
            ),
            FLAGS.max_flows_per_capture,
            seed,
        )
        dataset = data.dataset
        capture_index = np.asarray(data.store.column("capture_index")[:])
        test_captures = {
            name: int(
                np.unique(
                    capture_index[
                        dataset.test_idx[dataset.labels[dataset.test_idx] == c]
                    ]
                ).size
            )
            for c, name in enumerate(dataset.class_names)
        }
        scored = [n for n, k in test_captures.items() if k >= FLAGS.min_test_captures]
        listed[seed] = test_captures
        results = train_models(data, models, seed, scratch / "multiclass", extra)
        if seed == seeds[0]:
            write_seed_comparison(
                report_doc.out_dir / "multiclass",
                results,
                config,
                title=f"Capture corpus, one class per capture class, seed {seed}",
            )
        per_seed[seed] = {}
        for name, result in results.items():
            per_class = result["metrics"]["per_class"]
            f1s = [per_class[c]["f1"] for c in scored]
            row = {
                "accuracy": result["metrics"]["accuracy"],
                "macro_f1_scored": float(np.mean(f1s)) if f1s else None,
                **{f"f1_{c}": per_class[c]["f1"] for c in scored},
                "scored_classes": scored,
            }
            per_seed[seed][name] = row
            runs.setdefault(name, []).append(row)
        report_doc.data["multiclass"] = {
            "per_seed": per_seed,
            "test_captures_per_class": listed,
            "min_test_captures": FLAGS.min_test_captures,
        }
        multiclass_section(report_doc, per_seed, listed, runs)


def multiclass_section(report_doc, per_seed: dict, listed: dict, runs: dict) -> None:
    """The multi-class table (mean ± std over the seeds in ``per_seed``), the test
    captures per class, and the plot; rewritten in place on each call."""
    done = list(per_seed)
    scored_everywhere = [
        c
        for c in listed[done[0]]
        if all(listed[s][c] >= FLAGS.min_test_captures for s in done)
    ]
    keys = ["accuracy", "macro_f1_scored", *(f"f1_{c}" for c in scored_everywhere)]
    summary = {
        name: {k: common.mean_std([r.get(k) for r in rows]) for k in keys}
        for name, rows in runs.items()
    }
    report_doc.data["multiclass"]["summary"] = summary
    table = common.markdown_table(
        [
            "model",
            "Accuracy",
            "Macro F1 (scored classes)",
            *(f"F1 {c}" for c in keys[2:]),
        ],
        [
            [name, *(common.format_mean_std(s[k]) for k in keys)]
            for name, s in summary.items()
        ],
    )
    counts = common.markdown_table(
        ["class", *(f"test captures, seed {s}" for s in done)],
        [[c, *(listed[s][c] for s in done)] for c in listed[done[0]]],
    )
    plot = common.line_plot(
        report_doc.out_dir / "multiclass.png",
        keys[1:],
        {n: [s[k]["mean"] for k in keys[1:]] for n, s in summary.items()},
        "Capture corpus, multi-class: mean F1 over seeds",
        "scored class",
    )
    report_doc.add(
        "\n".join(
            [
                "## Capture corpus: one class per capture class",
                "",
                f"Same split by capture file, seeds {done}. A class is scored only "
                f"when every seed's test split holds at least "
                f"{FLAGS.min_test_captures} of its captures; the macro F1 is over "
                "the classes scored in that seed. Every class still trains. "
                "Accuracy counts every test flow.",
                "",
                table,
                "",
                "Test captures per class (classes under the bar are listed, not "
                "scored):",
                "",
                counts,
                "",
                "[multiclass/comparison.md](multiclass/comparison.md) holds seed "
                f"{done[0]}'s full table with every class.",
                "",
                f"![multiclass]({plot.name})",
                "",
            ]
        ),
        key="multiclass",
    )
    report_doc.write()


def loso_part(report_doc, options, scratch, store_path, models):
    """Each of the largest sources in turn is the test set; the rest trains."""
    from stfe_jax.store import splits
    from stfe_jax.train import Dataset

    config = _config(models[0], 0)
    data = prepare(
        job.JobOptions(store=store_path, labels=options.labels), config, scratch
    )
    data = common.cap_per_capture(data, FLAGS.max_flows_per_capture, 0)
    kept = np.zeros(data.dataset.labels.size, dtype=bool)
    kept[data.dataset.train_idx] = kept[data.dataset.val_idx] = True
    kept[data.dataset.test_idx] = True
    sources = capture_sources(data.store, options.labels[0])
    capture_index = np.asarray(data.store.column("capture_index")[:])
    start_ns = np.asarray(data.store.column("start_ns")[:])
    flow_source = sources[capture_index]
    labelled = (data.dataset.labels >= 0) & kept
    names, counts = np.unique(sources[sources != ""], return_counts=True)
    largest = [str(n) for n in names[np.argsort(-counts)][: FLAGS.loso_sources]]
    rows, table_rows = {}, []
    for held_out in largest:
        test_mask = (flow_source == held_out) & labelled
        rest = np.flatnonzero(~(flow_source == held_out) & labelled)
        side = splits.assign_split(
            start_ns[rest],
            capture_index[rest],
            policy="capture",
            seed=0,
            fractions=(0.85, 0.15, 0.0),
        )
        dataset = Dataset(
            arrays=data.dataset.arrays,
            labels=data.dataset.labels,
            class_names=data.dataset.class_names,
            train_idx=rest[side == 0],
            val_idx=rest[side == 1],
            test_idx=np.flatnonzero(test_mask),
        )
        held = types.SimpleNamespace(**vars(data))
        held.dataset = dataset
        held.title = f"capture corpus, source {held_out} held out"
        held.duplicate_share = float(
            splits.duplicate_share(
                data.store.column("packets"), dataset.train_idx, dataset.test_idx
            )
        )
        results = train_models(held, models, 0, scratch / f"loso-{held_out}")
        test_labels = dataset.labels[dataset.test_idx]
        entry = {
            "test_flows": int(dataset.test_idx.size),
            "test_attack_flows": int(np.sum(test_labels != dataset.normal_class)),
            "test_captures": int(np.unique(capture_index[dataset.test_idx]).size),
            "duplicate_share_test_in_train": held.duplicate_share,
            "rows": {},
        }
        from stfe_jax.evaluate import report

        for row in report.comparison_rows(results):
            entry["rows"][row["name"]] = common.metric_values(row["metrics"])
            table_rows.append(
                [
                    held_out,
                    row["name"],
                    entry["test_captures"],
                    entry["test_flows"],
                    entry["test_attack_flows"],
                    *(
                        common.metric_values(row["metrics"])[k]
                        for k in (
                            "f1",
                            "detection_rate",
                            "false_alarm_rate",
                            "roc_auc",
                            "pr_auc",
                        )
                    ),
                ]
            )
        rows[held_out] = entry
        report_doc.data["leave_one_source_out"] = rows
        plot = common.line_plot(
            report_doc.out_dir / "leave_one_source_out.png",
            list(rows),
            {
                f"{m} {k}": [rows[s]["rows"][m][k] for s in rows]
                for m in models
                for k in ("roc_auc", "false_alarm_rate")
            }
            | {
                f"flow statistics forest {k}": [
                    next(
                        (
                            v[k]
                            for n, v in rows[s]["rows"].items()
                            if "flow statistics" in n
                        ),
                        None,
                    )
                    for s in rows
                ]
                for k in ("roc_auc",)
            },
            "Leave one source out (binary): held-out source",
            "held-out source",
        )
        report_doc.add(
            "\n".join(
                [
                    "## Capture corpus: leave one source out (binary)",
                    "",
                    f"The {len(largest)} largest sources by capture count "
                    f"({', '.join(largest)}; done: {len(rows)}), each in turn "
                    "the whole test set; the other sources' captures split 85/15 into "
                    "train and validation (seed 0). A source with no attack capture "
                    "has no detection rate or AUC: only its false alarm rate counts.",
                    "",
                    common.markdown_table(
                        [
                            "held-out source",
                            "row",
                            "test captures",
                            "test flows",
                            "attack flows",
                            "F1",
                            "Detection rate",
                            "False alarm rate",
                            "ROC AUC",
                            "PR AUC",
                        ],
                        table_rows,
                    ),
                    "",
                    f"![leave one source out]({plot.name})",
                    "",
                ]
            ),
            key="loso",
        )
        report_doc.write()


def run_corpus(report_doc, scratch: pathlib.Path) -> None:
    """Binary, multi-class and leave-one-source-out parts on the capture corpus."""
    models = list(FLAGS.models)
    options = job.JobOptions(labels=[FLAGS.labels], tiny=FLAGS.tiny, store=FLAGS.store)
    config = _config(models[0], 0)
    first = prepare(options, config, scratch)
    store_path = str(first.store.store_dir)
    report_doc.data["store"] = {
        "path": store_path,
        "flows": int(first.store.num_flows),
        "captures": len(first.store.captures),
        "flows_config": config.flows.to_dict(),
        "label_report": first.label_report,
    }
    report_doc.add(
        "\n".join(
            [
                "Data: the real capture corpus "
                f"(`{FLAGS.labels}`, {len(first.store.captures)} captures, "
                f"{first.store.num_flows} flows of {config.flows.packets_per_flow} "
                f"packets x {config.flows.bytes_per_packet} bytes). Labels are weak "
                "and per file: every flow of a capture gets its capture's class, so "
                "an attack capture's incidental DNS or ARP flows count as attack. "
                "Classes follow their sources (most exploit captures come from one "
                "collection, most normal ones from a few protocol test suites), so "
                "a model can score by recognising a source rather than an attack; "
                "the leave-one-source-out part measures how much of the score "
                "survives a source never seen in training.",
                "",
                f"At most {FLAGS.max_flows_per_capture or 'all'} flows of each "
                "capture are kept (drawn per seed; 0 would keep all): a few captures "
                "hold thousands of flows while most hold one, and uncapped they "
                "would fill both sides. The kept flows are split 70/10/20 by "
                "capture file, so no capture has flows on two sides.",
                "",
                f"Budget per model and seed: {FLAGS.steps} steps of "
                f"{FLAGS.batch_size} flows ({FLAGS.steps * FLAGS.batch_size} flow "
                "samples), validation every quarter, the best validation state "
                f"kept; probes fitted on {FLAGS.feature_flows} training flows.",
                "",
            ]
        )
    )
    report_doc.write()

    def binary_data(seed):
        data = first
        if seed != 0:
            data = prepare(
                job.JobOptions(store=store_path, labels=[FLAGS.labels]),
                _config(models[0], seed),
                scratch,
            )
        return common.cap_per_capture(data, FLAGS.max_flows_per_capture, seed)

    if "binary" in FLAGS.parts:
        compare_over_seeds(
            report_doc,
            "binary",
            "Capture corpus, binary normal vs attack, split by capture file",
            binary_data,
            _seeds(FLAGS.seeds),
            models,
            scratch,
        )
    if "multiclass" in FLAGS.parts and FLAGS.multiclass_seeds > 0:
        multiclass_part(report_doc, options, scratch, store_path, models)
    if "loso" in FLAGS.parts and FLAGS.loso_sources > 0:
        loso_part(report_doc, options, scratch, store_path, list(FLAGS.loso_models))


# --- synthetic ----------------------------------------------------------------


def cross_day_data(day_a, day_b):
    """Train and validate on day A (split by time), test on every flow of day B."""
    from stfe_jax.main import PreparedData
    from stfe_jax.store import splits
    from stfe_jax.train import Dataset

    if list(day_a.dataset.class_names) != list(day_b.dataset.class_names):
        raise ValueError(
            f"the two days' classes differ: {day_a.dataset.class_names} vs "
            f"{day_b.dataset.class_names}"
        )
    n_a = int(day_a.store.num_flows)
    arrays = {
        name: np.concatenate(
            [
                np.asarray(day_a.dataset.arrays[name][:]),
                np.asarray(day_b.dataset.arrays[name][:]),
            ]
        )
        for name in day_a.dataset.arrays
    }
    labels = np.concatenate([day_a.dataset.labels, day_b.dataset.labels])
    a = day_a.dataset
    train_idx = np.concatenate([a.train_idx, a.test_idx])
    test_idx = n_a + np.flatnonzero(day_b.dataset.labels >= 0)
    dataset = Dataset(
        arrays=arrays,
        labels=labels,
        class_names=a.class_names,
        train_idx=np.sort(train_idx),
        val_idx=a.val_idx,
        test_idx=test_idx,
    )
    duplicate = float(
        splits.duplicate_share(arrays["packets"], dataset.train_idx, test_idx)
    )
    return PreparedData(
        store=types.SimpleNamespace(
            path=f"{day_a.store.store_dir} + {day_b.store.store_dir}",
            captures=[*day_a.store.captures, *day_b.store.captures],
        ),
        dataset=dataset,
        title="SYNTHETIC days: train on day seed 0, test on day seed 1",
        synthetic=True,
        label_report={"train_day": day_a.label_report, "test_day": day_b.label_report},
        duplicate_share=duplicate,
    )


def run_synthetic(report_doc, scratch: pathlib.Path) -> None:
    """The generated day, over seeds; then one day for training, another for test."""
    models = list(FLAGS.models)
    options = job.JobOptions(
        tiny=FLAGS.tiny, synthetic_scale=FLAGS.synthetic_scale, synthetic_seed=0
    )
    first = prepare(options, _config(models[0], 0), scratch / "day0")
    store_path = str(first.store.store_dir)
    label_paths = sorted(
        str(p)
        for p in (scratch / "day0" / "synthetic_day").iterdir()
        if p.suffix in (".csv", ".xml")
    )
    report_doc.add(
        "SYNTHETIC data: the MAWI-like day that stfe_jax.synth generates (one capture, "
        f"{first.store.num_flows} flows, split by time). A pipeline check, never "
        "evidence about real traffic.\n"
    )

    def day_data(seed):
        if seed == 0:
            return first
        return prepare(
            job.JobOptions(store=store_path, labels=label_paths),
            _config(models[0], seed),
            scratch / "day0",
        )

    if "same_day" in FLAGS.parts:
        compare_over_seeds(
            report_doc,
            "synthetic",
            "SYNTHETIC MAWI-like day (pipeline check), split by time",
            day_data,
            _seeds(FLAGS.seeds),
            models,
            scratch,
        )
    if "cross_day" in FLAGS.parts and FLAGS.cross_day_seeds > 0:
        other = prepare(
            job.JobOptions(
                tiny=FLAGS.tiny, synthetic_scale=FLAGS.synthetic_scale, synthetic_seed=1
            ),
            _config(models[0], 0),
            scratch / "day1",
        )
        crossed = cross_day_data(first, other)
        compare_over_seeds(
            report_doc,
            "synthetic_cross_day",
            "SYNTHETIC: trained on one generated day (seed 0), tested on another "
            "(seed 1)",
            lambda seed: crossed,
            list(range(FLAGS.cross_day_seeds)),
            models,
            scratch,
        )


TITLES = {
    "corpus": "Model comparison on the real capture corpus",
    "synthetic": "Model comparison on the SYNTHETIC MAWI-like day (pipeline check)",
}
PARTS = {
    "corpus": ("binary", "multiclass", "loso"),
    "synthetic": ("same_day", "cross_day"),
}


def check_parts(dataset: str, parts) -> None:
    """Refuses a --parts naming no known part, or none of ``dataset``'s parts."""
    known = [p for names in PARTS.values() for p in names]
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; known: {known}")
    if dataset in PARTS and not set(parts) & set(PARTS[dataset]):
        raise app.UsageError(
            f"--parts={','.join(parts)} names none of the {dataset} parts "
            f"{list(PARTS[dataset])}"
        )


def read_merged(folders) -> list[dict]:
    """The report.json of each --merge folder, checked to be compare_models runs
    of one dataset with no seed twice."""
    import json

    resolved = [pathlib.Path(f).resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"--merge names a folder twice: {[str(f) for f in folders]}")
    documents = []
    for folder in folders:
        path = pathlib.Path(folder) / "report.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"--merge {folder}: no report.json there (expected a result folder "
                "that compare_models.py wrote)"
            )
        d = json.loads(path.read_text())
        if d.get("title") not in TITLES.values():
            raise ValueError(
                f"--merge {folder}: report.json titled {d.get('title')!r} is not a "
                f"compare_models result (expected one of {list(TITLES.values())})"
            )
        documents.append(d)
    titles = {d["title"] for d in documents}
    if len(titles) > 1:
        raise ValueError(
            f"--merge: the folders hold different datasets: {sorted(titles)}"
        )
    for part in ("binary", "synthetic", "synthetic_cross_day", "multiclass"):
        seen = {}
        for folder, d in zip(folders, documents, strict=True):
            entry = d.get(part) or {}
            for seed in entry.get("seeds") or entry.get("per_seed") or ():
                if str(seed) in seen:
                    raise ValueError(
                        f"--merge: {part} seed {seed} is in both {seen[str(seed)]} "
                        f"and {folder}; each seed may come from one folder only"
                    )
                seen[str(seed)] = folder
    return documents


def merge_reports(out_dir: pathlib.Path, folders) -> None:
    """Joins the results of runs over other seeds (same data and budget) into
    one report: per part, mean ± std over every seed of every folder.

    Leave one source out runs one seed and is not joined: the report links the
    folders that hold it."""
    documents = read_merged(folders)
    report_doc = common.Report(out_dir, documents[0]["title"], sys.argv)
    report_doc.data["joined"] = [
        {
            "folder": str(folder),
            "command": d["provenance"]["command"],
            "git_commit": d["provenance"]["git_commit"],
            "elapsed_s": d["elapsed_s"],
            "finished": d["finished"],
        }
        for folder, d in zip(folders, documents, strict=True)
    ]
    report_doc.add(
        "\n".join(
            [
                "Joined from these runs (each trained its own seeds; nothing was "
                "trained by the joining command):",
                "",
                *(
                    f"- [{pathlib.Path(j['folder']).name}]"
                    f"({os.path.relpath(j['folder'], out_dir)}/report.md): "
                    f"`{j['command']}` at `{j['git_commit'][:10]}`, "
                    f"{j['elapsed_s'] / 60:.0f} min"
                    + ("" if j["finished"] else " (stopped before its end)")
                    for j in report_doc.data["joined"]
                ),
                "",
            ]
        )
    )
    for d in documents:
        if "store" in d and "store" not in report_doc.data:
            report_doc.data["store"] = d["store"]
    for part in ("binary", "synthetic", "synthetic_cross_day"):
        runs, seeds, heading = {}, [], None
        for d in documents:
            entry = d.get(part)
            if not entry:
                continue
            heading = entry["heading"]
            part_runs = entry.get("runs")
            if part_runs is None:
                # Written before the runs were kept: exact only for one seed.
                if any(row["runs"] != 1 for row in entry["summary"].values()):
                    raise ValueError(f"{part}: a report without runs over 1 seed")
                part_runs = {
                    name: [{k: v["mean"] for k, v in row.items() if k != "runs"}]
                    for name, row in entry["summary"].items()
                }
            seeds += [int(seed) for seed in (entry.get("seeds") or entry["per_seed"])]
            for name, values in part_runs.items():
                runs.setdefault(name, []).extend(values)
        if not runs:
            continue
        summary = {
            name: {
                key: common.mean_std([v[key] for v in values])
                for key, _, _ in common.METRIC_COLUMNS
            }
            | {"runs": len(values)}
            for name, values in runs.items()
        }
        report_doc.data[part] = {
            "heading": heading,
            "seeds": seeds,
            "runs": runs,
            "summary": summary,
        }
        plot = common.bar_plot(
            out_dir / f"{part}.png", summary, ["f1", "roc_auc", "pr_auc"], heading
        )
        report_doc.add(
            "\n".join(
                [
                    f"## {heading}",
                    "",
                    f"Mean ± standard deviation over seeds {sorted(seeds)} (seed = "
                    "split, initialisation and batch order). Rows: the models, each "
                    "model's learned features into a logistic regression and a "
                    "random forest, and the random forest on flow statistics. "
                    "Precision, recall and F1 are macro averages over classes; "
                    "detection and false alarm rates are of the attack-versus-normal "
                    "decision at the threshold chosen on validation flows; AUCs are "
                    "of the anomaly score 1 - p(normal).",
                    "",
                    common.summary_table(summary),
                    "",
                    f"![{part}]({plot.name})",
                    "",
                ]
            ),
            key=part,
        )
    with_loso = [
        f
        for f, d in zip(folders, documents, strict=True)
        if "leave_one_source_out" in d
    ]
    if with_loso:
        logging.warning("leave one source out is not joined; see %s", with_loso)
        report_doc.add(
            "Leave one source out runs one seed and is not joined here: see "
            + ", ".join(
                f"[{pathlib.Path(f).name}]({os.path.relpath(f, out_dir)}/report.md)"
                for f in with_loso
            )
            + ".\n",
            key="loso",
        )
    per_seed, listed = {}, {}
    for d in documents:
        entry = d.get("multiclass")
        if entry:
            per_seed.update(entry["per_seed"])
            listed.update(entry["test_captures_per_class"])
    if per_seed:
        report_doc.data["multiclass"] = {
            "per_seed": per_seed,
            "test_captures_per_class": listed,
            "min_test_captures": FLAGS.min_test_captures,
        }
        runs = {}
        for rows in per_seed.values():
            for name, row in rows.items():
                runs.setdefault(name, []).append(row)
        multiclass_section(report_doc, per_seed, listed, runs)
    report_doc.write(finished=True)


def main(argv):
    del argv
    job.quiet_library_logs()
    common.enable_compilation_cache()
    name = {"corpus": "compare_corpus", "synthetic": "compare_synthetic"}.get(
        FLAGS.dataset, "label_matching_cic"
    )
    out = pathlib.Path(FLAGS.out) if FLAGS.out else common.RESULTS / name
    if FLAGS.merge:
        merge_reports(out, [pathlib.Path(f) for f in FLAGS.merge])
        return
    check_parts(FLAGS.dataset, FLAGS.parts)
    scratch = pathlib.Path(FLAGS.workdir or f"/tmp/stfe_experiments/{name}")
    scratch.mkdir(parents=True, exist_ok=True)
    if FLAGS.dataset == "cic":
        label_matching.run(out, scratch, sys.argv)
        return
    report_doc = common.Report(out, TITLES[FLAGS.dataset], sys.argv)
    started = time.perf_counter()
    if FLAGS.dataset == "corpus":
        run_corpus(report_doc, scratch)
    else:
        run_synthetic(report_doc, scratch)
    report_doc.write(finished=True)
    logging.info(
        "wrote %s in %.1f min", out / "report.md", (time.perf_counter() - started) / 60
    )


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(common.reporting_user_errors(main))
