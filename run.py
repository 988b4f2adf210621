"""stfe-jax command line: preprocess captures, train and compare models, detect.

The main job, on the built-in synthetic MAWI-like day:

  python run.py --model=cnn_lstm

On real captures labelled per file, MAWILab or a CICFlowMeter CSV:

  python run.py --model=all --captures='traces/*.pcap' --labels=labels.csv

Any config field can be overridden:

  python run.py --set=train.steps=500 --set=flows.bytes_per_packet=64
"""

import sys

from absl import app, flags, logging

from stfe_jax import main

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "preprocess", "detect", "fetch"],
    "train: build the store, train and evaluate; preprocess: build the store only; "
    "detect: score captures or an interface with a trained model; fetch: download a "
    "MAWI day and its MAWILab labels.",
)
flags.DEFINE_enum(
    "model",
    "cnn_lstm",
    ["mlp", "cnn", "lstm", "cnn_lstm", "all"],
    "The model to train, or all four on one split.",
)
flags.DEFINE_multi_string(
    "captures", [], "Capture files or globs (pcap, pcapng, optionally gzipped)."
)
flags.DEFINE_multi_string(
    "labels",
    [],
    "Label files: MAWILab CSV/XML, a CICFlowMeter-style CSV, or a CSV mapping capture "
    "files to classes. Kind detected from the content.",
)
flags.DEFINE_string("store", None, "An existing store directory to train from.")
flags.DEFINE_string("workdir", None, "Output directory (default: runs/<time>-<model>).")
flags.DEFINE_multi_string("set", [], "Config override KEY=VALUE, e.g. train.steps=200.")
flags.DEFINE_bool("tiny", False, "Use the tiny config (seconds on a CPU; for tests).")
flags.DEFINE_bool("resume", False, "Resume training from the workdir's checkpoints.")
flags.DEFINE_float(
    "synthetic_scale", 1.0, "Size of the built-in synthetic day (1.0: ~17k flows)."
)
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the built-in synthetic day.")
flags.DEFINE_string(
    "scheduler", None, "Build the store on this Dask scheduler (tcp://host:8786)."
)
flags.DEFINE_integer(
    "workers", None, "Build the store on a local Dask cluster of this many processes."
)
flags.DEFINE_string("day", None, "fetch: the MAWI day, YYYYMMDD.")
flags.DEFINE_string("checkpoint", None, "detect: a training workdir or checkpoint dir.")
flags.DEFINE_string("interface", None, "detect: capture live from this interface.")
flags.DEFINE_string("capture_filter", None, "detect: a capture filter (BPF syntax).")
flags.DEFINE_float("threshold", None, "detect: anomaly score threshold.")
flags.DEFINE_integer("explain", 0, "detect: dissect the N highest-scoring alerts.")


def _main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        main.run(FLAGS)
    except main.USER_ERRORS as error:
        # Bad input, a missing file, an incompatible store or checkpoint: the
        # message says what and where; a traceback would only hide it.
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(_main)
