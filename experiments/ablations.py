"""Ablations of the CNN-LSTM on the real capture corpus: one seed, a fixed budget.

Each ablation changes one thing against the default (8 packets x 100 bytes,
addresses and ports masked, inter-arrival time and direction fed, byte
embedding, convolutions of 32 and 64 channels, 64 LSTM units) and trains the
CNN-LSTM once per point on the same flows and split:

- ``bytes_per_packet`` 16, 32, 64, 100, 200 and ``packets_per_flow`` 1, 2, 4, 8,
  16: read from one store cut at 16 packets x 200 bytes, keeping the first P
  packets and B bytes of each sample (tests/test_experiments_scripts.py checks
  that this equals a store cut at P x B);
- ``masking``: each masking option switched from its default; each point, the
  default included, builds its own store (labelled, split and capped alike);
- ``side_inputs`` (inter-arrival time, direction), ``byte_encoding`` (embedding
  or one-hot), ``cnn`` (width and depth), ``lstm_units``: model changes only.

  python experiments/ablations.py --steps=200
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np
from absl import app, flags, logging

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # common.py, then stfe_jax

import common  # noqa: E402

from stfe_jax import main as job  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "labels", "../shared/datasets/capture-corpus/labels.csv", "Per-capture classes."
)
flags.DEFINE_integer("steps", 300, "Training steps per point.")
flags.DEFINE_integer("batch_size", 64, "Flows per training step.")
flags.DEFINE_integer("max_flows_per_capture", 50, "Flows kept per capture (0: all).")
flags.DEFINE_integer(
    "captures_sample",
    0,
    "Captures read: every attack capture and normal ones drawn with the seed up "
    "to this many (0: all). Each masking point reads them into its own store.",
)
flags.DEFINE_integer("seed", 0, "The one seed (split, initialisation, order).")
flags.DEFINE_list(
    "ablations",
    [
        "masking",
        "bytes_per_packet",
        "packets_per_flow",
        "side_inputs",
        "byte_encoding",
        "cnn",
        "lstm_units",
    ],
    "Ablations to run, in this order.",
)
flags.DEFINE_integer("max_points", 0, "Run only the first N points of each (0: all).")
flags.DEFINE_bool("tiny", False, "Tiny layers and budget (tests).")
flags.DEFINE_multi_string("set", [], "Further config overrides KEY=VALUE.")
flags.DEFINE_string("out", None, "Result folder (default experiments/results/...).")
flags.DEFINE_string("workdir", None, "Scratch folder (default /tmp/...).")

MAX_PACKETS, MAX_BYTES = 16, 200
DEFAULT_PACKETS, DEFAULT_BYTES = 8, 100

# name -> (what changes, [(point label, overrides, kind)]); kind "slice" reads
# the wide store, "store" builds a store with the overrides, "model" changes
# the network only.
ABLATIONS = {
    "masking": (
        "masking option (default: addresses and ports masked, the rest kept)",
        [
            ("default", (), "store"),
            (
                "addresses and ports kept",
                ("flows.mask_addresses=false", "flows.mask_ports=false"),
                "store",
            ),
            ("addresses kept", ("flows.mask_addresses=false",), "store"),
            ("ports kept", ("flows.mask_ports=false",), "store"),
            (
                "+ IP checksum and id masked",
                ("flows.mask_ip_checksum_id=true",),
                "store",
            ),
            ("+ TTL masked", ("flows.mask_ttl=true",), "store"),
            ("+ TCP seq/ack masked", ("flows.mask_tcp_seq_ack=true",), "store"),
            ("+ TCP timestamps masked", ("flows.mask_tcp_timestamps=true",), "store"),
            ("+ IPv6 flow label masked", ("flows.mask_ipv6_flow_label=true",), "store"),
        ],
    ),
    "bytes_per_packet": (
        "bytes per packet",
        [
            (str(b), (f"flows.bytes_per_packet={b}",), "slice")
            for b in (16, 32, 64, 100, 200)
        ],
    ),
    "packets_per_flow": (
        "packets per flow",
        [(str(p), (f"flows.packets_per_flow={p}",), "slice") for p in (1, 2, 4, 8, 16)],
    ),
    "side_inputs": (
        "inter-arrival time and direction inputs",
        [
            ("both", (), "model"),
            ("no inter-arrival time", ("model.use_iat=false",), "model"),
            ("no direction", ("model.use_direction=false",), "model"),
            ("neither", ("model.use_iat=false", "model.use_direction=false"), "model"),
        ],
    ),
    "byte_encoding": (
        "byte encoding",
        [
            ("embedding", (), "model"),
            ("one-hot", ("model.byte_encoding=onehot",), "model"),
        ],
    ),
    "cnn": (
        "CNN width and depth (channels per convolution)",
        [
            ("(16, 32)", ("model.conv_features=(16,32)",), "model"),
            ("(32, 64)", (), "model"),
            ("(64, 128)", ("model.conv_features=(64,128)",), "model"),
            ("(32,)", ("model.conv_features=(32,)",), "model"),
            ("(32, 64, 128)", ("model.conv_features=(32,64,128)",), "model"),
        ],
    ),
    "lstm_units": (
        "LSTM units",
        [(str(u), (f"model.lstm_hidden={u}",), "model") for u in (16, 32, 64, 128)],
    ),
}
SHOWN = ("accuracy", "f1", "detection_rate", "false_alarm_rate", "roc_auc", "pr_auc")


def _config(overrides=()):
    base = [
        f"train.steps={FLAGS.steps}",
        f"train.batch_size={FLAGS.batch_size}",
        f"train.eval_every={max(1, FLAGS.steps // 4)}",
        "train.early_stopping_patience=0",
        f"train.seed={FLAGS.seed}",
        f"split.seed={FLAGS.seed}",
        *FLAGS.set,
        *overrides,
    ]
    return job.load_config("cnn_lstm", job.JobOptions(tiny=FLAGS.tiny, overrides=base))


def sample_manifest(labels_path: str, size: int, seed: int, folder) -> str:
    """A copy of the per-capture class CSV keeping every attack capture and
    normal captures drawn with ``seed``, ``size`` rows in all (0: every row).

    Paths are made absolute, so the copy can live anywhere. Returns its path.
    """
    import csv

    with open(labels_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames, list(reader)
    base = os.path.dirname(os.path.abspath(labels_path))
    for row in rows:
        row["capture"] = os.path.normpath(os.path.join(base, row["capture"]))
    if size > 0:
        attack = [r for r in rows if r["class"] != "normal"]
        normal = [r for r in rows if r["class"] == "normal"]
        drawn = np.random.default_rng(seed).permutation(len(normal))
        rows = attack + [normal[i] for i in sorted(drawn[: max(0, size - len(attack))])]
    path = pathlib.Path(folder) / "labels_sample.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _captures_read(count: int) -> str:
    """How the ablation's captures were chosen, in words."""
    if FLAGS.captures_sample <= 0:
        return f"all {count} of its captures"
    return (
        f"{count} of its captures (every attack capture and normal ones drawn with "
        f"the seed, --captures_sample={FLAGS.captures_sample})"
    )


class Points:
    """Trains and scores one point at a time, caching points already seen."""

    def __init__(self, scratch: pathlib.Path):
        self.scratch = scratch
        self.cache: dict = {}
        self.labels = sample_manifest(
            FLAGS.labels, FLAGS.captures_sample, FLAGS.seed, scratch
        )
        options = job.JobOptions(labels=[self.labels], tiny=FLAGS.tiny)
        wide_config = _config(
            (
                f"flows.packets_per_flow={MAX_PACKETS}",
                f"flows.bytes_per_packet={MAX_BYTES}",
            )
        )
        started = time.perf_counter()
        self.wide_data = job.prepare_data(options, wide_config, scratch / "wide")
        self.store_s = {"wide": time.perf_counter() - started}
        self.capped = common.cap_per_capture(
            self.wide_data, FLAGS.max_flows_per_capture, FLAGS.seed
        )
        self.wide = {
            name: np.asarray(self.wide_data.store.column(name)[:])
            for name in ("packets", "packet_caplen", "direction", "iat_s", "n_packets")
        }

    def dataset(self, arrays):
        from stfe_jax.train import Dataset

        d = self.capped.dataset
        return Dataset(
            arrays=arrays,
            labels=d.labels,
            class_names=d.class_names,
            train_idx=d.train_idx,
            val_idx=d.val_idx,
            test_idx=d.test_idx,
        )

    def store_dataset(self, overrides, name):
        """A store cut with ``overrides``, labelled, split and capped as the wide
        one (same captures, seed and cap). Its flows are assembled anew, so the
        masking points compare with a default point built the same way."""
        from stfe_jax import store as store_lib

        config = _config(overrides)
        started = time.perf_counter()
        store_lib.build_store(
            self.wide_data.store.captures,
            self.scratch / name,
            config.flows,
            workers=2,
        )
        self.store_s[name] = time.perf_counter() - started
        data = job.prepare_data(
            job.JobOptions(store=str(self.scratch / name), labels=[self.labels]),
            config,
            self.scratch,
        )
        return common.cap_per_capture(
            data, FLAGS.max_flows_per_capture, FLAGS.seed
        ).dataset

    def run(self, overrides, kind) -> dict:
        """Metrics of the CNN-LSTM trained with ``overrides`` (cached)."""
        from stfe_jax.evaluate import report
        from stfe_jax.train import train_and_evaluate

        config = _config(overrides)
        packets = config.flows.packets_per_flow
        bytes_ = config.flows.bytes_per_packet
        key = (
            kind == "store",
            tuple(sorted(overrides)) if kind != "slice" else (),
            ("shape", packets, bytes_),
        )
        if key in self.cache:
            return self.cache[key]
        name = "-".join(o.replace("=", "_") for o in overrides) or "default"
        if kind == "store":
            dataset = self.store_dataset(overrides, f"store-{name}")
        else:
            dataset = self.dataset(common.sliced_arrays(self.wide, packets, bytes_))
        started = time.perf_counter()
        trained = train_and_evaluate(
            config, dataset, self.scratch / f"run-{kind}-{name}"
        )
        result = report.complete_result(
            {
                "model": "cnn_lstm",
                "class_names": trained["class_names"],
                "normal_class": trained["normal_class"],
                "threshold": trained.get("threshold"),
                "test": {
                    "labels": trained["splits"]["test"]["labels"],
                    "probs": trained["splits"]["test"]["probs"],
                },
            },
            config,
        )
        entry = {
            **common.metric_values(result["metrics"]),
            "wall_s": time.perf_counter() - started,
            "samples_per_s": (trained.get("timings") or {}).get("samples_per_s"),
            "best_step": trained.get("best_step"),
        }
        logging.info(
            "point %s: %s", name, report.format_metrics_line(result["metrics"])
        )
        self.cache[key] = entry
        return entry


def main(argv):
    del argv
    job.quiet_library_logs()
    common.enable_compilation_cache()
    out = pathlib.Path(FLAGS.out) if FLAGS.out else common.RESULTS / "ablations"
    scratch = pathlib.Path(FLAGS.workdir or "/tmp/stfe_experiments/ablations")
    scratch.mkdir(parents=True, exist_ok=True)
    unknown = [a for a in FLAGS.ablations if a not in ABLATIONS]
    if unknown:
        raise app.UsageError(f"unknown ablations {unknown}; known: {list(ABLATIONS)}")
    if not os.path.isfile(FLAGS.labels):
        raise FileNotFoundError(
            f"--labels {FLAGS.labels!r}: no such file (expected the per-capture "
            "class CSV of the capture corpus)"
        )

    report_doc = common.Report(
        out, "Ablations of the CNN-LSTM on the real capture corpus", sys.argv
    )
    points = Points(scratch)
    d = points.capped.dataset
    report_doc.add(
        "\n".join(
            [
                f"Data: the real capture corpus (`{FLAGS.labels}`), "
                f"{_captures_read(len(points.wide_data.store.captures))}, "
                "binary normal vs attack; labels are weak and per file, and classes "
                "follow their sources (see compare_corpus). At most "
                f"{FLAGS.max_flows_per_capture} "
                f"flows per capture, split by capture file with seed {FLAGS.seed}: "
                f"{d.train_idx.size} training, {d.val_idx.size} validation and "
                f"{d.test_idx.size} test flows, the same at every point.",
                "",
                f"Budget per point: one CNN-LSTM, seed {FLAGS.seed}, {FLAGS.steps} "
                f"steps of {FLAGS.batch_size} flows "
                f"({FLAGS.steps * FLAGS.batch_size} flow samples), the best of four "
                "validations kept, the threshold chosen on validation flows. One "
                "seed: differences of a few hundredths are within the seed-to-seed "
                "spread that compare_corpus measures.",
                "",
            ]
        )
    )
    report_doc.data["captures"] = list(points.wide_data.store.captures)
    report_doc.data["split"] = {
        "train": int(d.train_idx.size),
        "val": int(d.val_idx.size),
        "test": int(d.test_idx.size),
    }
    for name in FLAGS.ablations:
        what, point_list = ABLATIONS[name]
        if FLAGS.max_points > 0:
            point_list = point_list[: FLAGS.max_points]
        rows = {}
        for label, overrides, kind in point_list:
            rows[label] = points.run(overrides, kind)
            report_doc.data[name] = {"what": what, "points": rows}
            report_doc.data["store_build_s"] = points.store_s
            plot = common.line_plot(
                report_doc.out_dir / f"{name}.png",
                list(rows),
                {k: [rows[p][k] for p in rows] for k in ("f1", "roc_auc", "pr_auc")}
                | {"false_alarm_rate": [rows[p]["false_alarm_rate"] for p in rows]},
                f"CNN-LSTM on the capture corpus: {what}",
                what,
            )
            done = len(rows) == len(point_list)
            report_doc.add(
                "\n".join(
                    [
                        f"## {what}" + ("" if done else " (unfinished)"),
                        "",
                        common.markdown_table(
                            [what, *SHOWN, "train+eval s"],
                            [
                                [label, *(r[k] for k in SHOWN), round(r["wall_s"])]
                                for label, r in rows.items()
                            ],
                        ),
                        "",
                        f"![{name}]({plot.name})",
                        "",
                    ]
                ),
                key=name,
            )
            report_doc.write()
    report_doc.write(finished=True)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(common.reporting_user_errors(main))
