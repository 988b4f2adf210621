"""How well a CICFlowMeter flow CSV matches our flows: the CIC-IDS2017 slice.

The slice is too thin to score a model (a few hundred flows inside the capture's
window, a handful of them attack), so this reports only the matching: CSV rows
inside the capture's time span, rows matched to a flow, flows labelled per class,
flows left unlabelled, and flows that several rows of different labels claim.

  python experiments/label_matching.py
  python experiments/compare_models.py --dataset=cic   # the same
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
from absl import app, flags, logging

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # common.py, then stfe_jax

import common  # noqa: E402

FLAGS = flags.FLAGS
SLICE = "../shared/datasets/cicids2017-slice"
flags.DEFINE_string("cic_capture", f"{SLICE}/demo.pcap", "The slice's capture.")
flags.DEFINE_string("cic_csv", f"{SLICE}/demo.csv", "Its CICFlowMeter CSV.")
flags.DEFINE_string(
    "cic_out", None, "Result folder (default experiments/results/label_matching_cic)."
)


def run(out_dir: pathlib.Path, scratch: pathlib.Path, argv) -> dict:
    """Builds the slice's store, matches the CSV, writes the report; returns it."""
    from stfe_jax import configs, labels
    from stfe_jax import main as job
    from stfe_jax import store as store_lib
    from stfe_jax.labels import cic

    report_doc = common.Report(
        out_dir, "Label matching on the CIC-IDS2017 slice (no model scored)", argv
    )
    config = configs.get_config("cnn_lstm")
    started = time.perf_counter()
    store = store_lib.build_store([FLAGS.cic_capture], scratch / "store", config.flows)
    build_s = time.perf_counter() - started
    meta = {name: store.column(name)[:] for name in job._FLOW_META_COLUMNS}

    started = time.perf_counter()
    labelled = labels.label_flows(meta, store.captures, [FLAGS.cic_csv], config.labels)
    label_s = time.perf_counter() - started
    rows = cic.read_cic_csv(FLAGS.cic_csv, config.labels.cic_timezone)
    found = cic.match_cic(meta, rows)
    matching = found.report

    starts, ends = np.asarray(meta["start_ns"]), np.asarray(meta["end_ns"])
    tolerance_ns = int(matching["tolerance_s"] * 1e9)
    in_span = (rows.start_ns >= starts.min() - tolerance_ns) & (
        rows.start_ns <= ends.max() + tolerance_ns
    )
    per_label = []
    for name in sorted(set(rows.label.tolist())):
        of_label = rows.label == name
        per_label.append(
            {
                "label": str(name),
                "rows": int(of_label.sum()),
                "rows_inside_span": int((of_label & in_span).sum()),
                "rows_matched": int((of_label & found.rows_matched).sum()),
                "rows_inside_span_unmatched": int(
                    (of_label & in_span & ~found.rows_matched).sum()
                ),
                "flows_labelled": int((found.names == name).sum()),
            }
        )
    flows_unlabelled = int((found.row_index < 0).sum())
    report_doc.data.update(
        {
            "capture": FLAGS.cic_capture,
            "csv": FLAGS.cic_csv,
            "flows": int(store.num_flows),
            "flows_unlabelled": flows_unlabelled,
            "matching": matching,
            "per_label": per_label,
            "label_flows_report": labelled.report,
            "store_build_s": build_s,
            "labelling_s": label_s,
        }
    )

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.0, 3.8))
    names = [p["label"] for p in per_label]
    x = np.arange(len(names))
    for k, key in enumerate(("rows_inside_span", "rows_matched", "flows_labelled")):
        axes.bar(x + 0.27 * k, [p[key] for p in per_label], 0.27, label=key)
    axes.set_xticks(x + 0.27)
    axes.set_xticklabels(names)
    axes.set_yscale("symlog")
    axes.set_title("CIC-IDS2017 slice: CSV rows and our flows per label", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_dir / "label_matching.png", dpi=110)
    pyplot.close(figure)

    report_doc.add(
        "\n".join(
            [
                f"Capture `{FLAGS.cic_capture}` cut into {store.num_flows} flows "
                f"(store built in {build_s:.1f} s); CSV `{FLAGS.cic_csv}` with "
                f"{matching['rows']} rows, of which "
                f"{matching['rows_inside_flow_time_span']} "
                "start inside the capture's time span. Rows are matched to flows by "
                "5-tuple in either direction and by start time within "
                f"{matching['tolerance_s']} s (the CSV's local time read as "
                f"UTC{config.labels.cic_timezone}). Too few attack flows to score a "
                "model: matching only.",
                "",
                "## Per CSV label",
                "",
                common.markdown_table(
                    [
                        "label",
                        "rows",
                        "rows inside the capture span",
                        "rows matched",
                        "rows inside the span, unmatched",
                        "our flows labelled",
                    ],
                    [
                        [
                            p["label"],
                            p["rows"],
                            p["rows_inside_span"],
                            p["rows_matched"],
                            p["rows_inside_span_unmatched"],
                            p["flows_labelled"],
                        ]
                        for p in per_label
                    ],
                ),
                "",
                "## Totals",
                "",
                common.markdown_table(
                    ["quantity", "value"],
                    [
                        ["our flows", int(store.num_flows)],
                        ["flows matched to a row", matching["flows_matched"]],
                        ["flows unlabelled (no row)", flows_unlabelled],
                        [
                            "flows claimed by rows of different labels",
                            matching["flows_with_conflicting_rows"],
                        ],
                        ["CSV rows matched", matching["rows_matched"]],
                        ["CSV rows unmatched", matching["rows_unmatched"]],
                        [
                            "CSV rows inside the span, unmatched",
                            matching["rows_inside_span_unmatched"],
                        ],
                        ["duplicate CSV rows", matching["duplicate_rows"]],
                    ],
                ),
                "",
                "![label matching](label_matching.png)",
                "",
            ]
        )
    )
    report_doc.write(finished=True)
    logging.info(
        "CIC slice: %d flows, %d matched, %d rows inside the span, %d matched",
        store.num_flows,
        matching["flows_matched"],
        matching["rows_inside_flow_time_span"],
        matching["rows_matched"],
    )
    return report_doc.data


def main(argv):
    del argv
    out = (
        pathlib.Path(FLAGS.cic_out)
        if FLAGS.cic_out
        else common.RESULTS / "label_matching_cic"
    )
    scratch = pathlib.Path("/tmp/stfe_experiments/label_matching_cic")
    scratch.mkdir(parents=True, exist_ok=True)
    run(out, scratch, sys.argv)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(common.reporting_user_errors(main))
