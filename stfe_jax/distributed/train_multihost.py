"""Command line: train on a labelled store with several JAX processes.

Run the same command in every process. On TPU pod slices, in SLURM jobs and in
Kubernetes job sets the processes find each other; elsewhere name the
coordinator (process 0's host and a free port) and each process's id:

  python -m stfe_jax.distributed.train_multihost --store=stores/mawi \\
      --workdir=runs/mh --model=cnn_lstm --coordinator_address=10.0.0.1:8476 \\
      --num_processes=2 --process_id=0      # and --process_id=1 on the other host

The store must hold the ``class_id`` and ``split`` side arrays and the ``labels``
document that ``run.py`` writes when it labels a store, or pass ``--labels``.
The workdir must be on storage that every process reads and writes.
"""

import json

import numpy as np
from absl import app, flags, logging

from stfe_jax import configs
from stfe_jax.distributed import multihost

FLAGS = flags.FLAGS

flags.DEFINE_string("store", None, "A finished store directory.")
flags.DEFINE_string("workdir", None, "Run directory shared by every process.")
flags.DEFINE_string("model", "cnn_lstm", "mlp, cnn, lstm or cnn_lstm.")
flags.DEFINE_bool("tiny", False, "Use the tiny config (seconds on a CPU).")
flags.DEFINE_multi_string("set", [], "Config override KEY=VALUE.")
flags.DEFINE_multi_string(
    "labels", [], "Label files; without them the store's own labels are used."
)
flags.DEFINE_bool("resume", False, "Resume from the workdir's last checkpoint.")
flags.DEFINE_integer(
    "num_parts",
    None,
    "Data parts (default: one per process); keep it to resume "
    "on another number of processes with the same batches.",
)
flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (default: detected)."
)
flags.DEFINE_integer("num_processes", None, "Processes in the run.")
flags.DEFINE_integer("process_id", None, "This process's id, 0 .. num_processes-1.")
flags.mark_flags_as_required(["store", "workdir"])


def load_dataset(store_dir: str, config, label_paths):
    """The store's flows with a label and split per flow, as a ``Dataset``.

    With ``label_paths`` the flows are labelled and split here (the same way on
    every process) and process 0 writes them beside the flows; without, the
    ``class_id``/``split`` side arrays and ``labels`` document are read.
    """
    from stfe_jax import labels as labels_lib
    from stfe_jax.store import Store, splits
    from stfe_jax.train import Dataset

    store = Store.open(store_dir)
    if label_paths:
        meta_names = ("start_ns", "end_ns", "protocol", "src_addr", "dst_addr")
        meta_names += ("src_port", "dst_port", "capture_index")
        meta = {name: store.column(name)[:] for name in meta_names}
        labelled = labels_lib.label_flows(
            meta, store.captures, list(label_paths), config.labels
        )
        class_id = np.asarray(labelled.class_id, np.int32)
        class_names = list(labelled.class_names)
        split = splits.assign_split(
            meta["start_ns"],
            meta["capture_index"],
            policy=config.split.policy,
            seed=config.split.seed,
            fractions=tuple(config.split.fractions),
        )
        split = np.where(class_id < 0, -1, split).astype(np.int8)
        if multihost.is_primary():
            store.write_side_array("class_id", class_id)
            store.write_side_array("split", split)
            store.write_side_json(
                "labels", {"class_names": class_names, "report": labelled.report}
            )
    else:
        missing = [n for n in ("class_id", "split", "labels") if not store.has_side(n)]
        if missing:
            raise ValueError(
                f"store {store_dir} has no {missing}: pass --labels, or label the "
                "store with run.py first"
            )
        class_id = np.asarray(store.read_side_array("class_id"), np.int32)
        split = np.asarray(store.read_side_array("split"))
        class_names = list(store.read_side_json("labels")["class_names"])
    return Dataset(
        arrays={name: store.column(name) for name in store.column_names},
        labels=class_id,
        class_names=class_names,
        train_idx=np.flatnonzero(split == 0),
        val_idx=np.flatnonzero(split == 1),
        test_idx=np.flatnonzero(split == 2),
    )


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    multihost.initialize(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
    from stfe_jax.distributed.trainer import train_multihost

    config = configs.get_config(FLAGS.model, tiny=FLAGS.tiny)
    configs.apply_overrides(config, list(FLAGS.set))
    dataset = load_dataset(FLAGS.store, config, FLAGS.labels)
    results = train_multihost(
        config,
        dataset,
        FLAGS.workdir,
        num_parts=FLAGS.num_parts,
        resume=FLAGS.resume,
    )
    if multihost.is_primary():
        _write_summary(FLAGS.workdir, results)


def _write_summary(workdir: str, results: dict) -> None:
    """``<workdir>/results.json``: history, timings, and per split the flows
    scored and the accuracy."""
    import pathlib

    summary = {
        name: results[name]
        for name in (
            "model",
            "class_names",
            "history",
            "best_step",
            "final_step",
            "early_stopped",
            "interrupted",
            "resumed_from",
            "threshold",
            "num_parts",
            "process_count",
            "timings",
        )
    }
    summary["splits"] = {
        name: {
            "flows_scored": int(split["probs"].shape[0]),
            "loss": split["loss"],
            "accuracy": float(np.mean(np.argmax(split["probs"], -1) == split["labels"]))
            if split["probs"].shape[0]
            else None,
        }
        for name, split in results["splits"].items()
    }
    path = pathlib.Path(workdir) / "results.json"
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    logging.info("Results written to %s", path)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
