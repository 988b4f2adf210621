"""Training across JAX processes: the train and eval steps of ``stfe_jax.train``
over a mesh of every process's devices, each process feeding its own data parts.

``train_multihost`` follows ``stfe_jax.train.train_and_evaluate``: train
``train.steps`` steps, validate every ``train.eval_every`` steps (early stopping
on ``eval.metric``), keep the last and the best state with Orbax (every process
saves its shards of the state together, process 0 the metadata), then score the
validation and test splits with the best parameters and pick the threshold on
validation. Evaluation splits each split's flows over the processes, pads the
short ones with masked rows, gathers the per-flow outputs onto every process and
checks that every flow was scored exactly once, so every process computes the
same metrics. Only process 0 writes files besides the checkpoints.
"""

from __future__ import annotations

import functools
import pathlib
import time

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from stfe_jax.distributed import multihost
from stfe_jax.evaluate import metrics as metrics_lib
from stfe_jax.models import build_model
from stfe_jax.store.batches import iterate_eval_batches, iterate_train_batches
from stfe_jax.train.checkpoints import RunCheckpoints
from stfe_jax.train.dataset import Dataset
from stfe_jax.train.loop import class_weights, validation_metric
from stfe_jax.train.state import create_train_state, learning_rate_schedule
from stfe_jax.train.steps import Sharding, make_eval_step, make_train_step


class MultihostCheckpoints(RunCheckpoints):
    """The run's last and best checkpoints, saved by every process together: each
    writes its shards of the state, process 0 the metadata (Orbax's multi-host
    saving). The step is read from this process's replica of the state."""

    @staticmethod
    def _args(state, loop_state: dict):
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop_state)
        )

    def save_last(self, state, loop_state: dict) -> None:
        """Saves ``state`` and ``loop_state`` as the last checkpoint."""
        step = int(multihost.to_host(state.step))
        if self.last.latest_step() != step:
            self.last.save(step, args=self._args(state, loop_state))

    def save_best(self, state, loop_state: dict) -> None:
        """Saves ``state`` as the best checkpoint."""
        step = int(multihost.to_host(state.step))
        self.best.save(step, args=self._args(state, loop_state))


def _check_batch_size(name: str, size: int, num_parts: int, sharding: Sharding):
    for divisor, what in (
        (num_parts, "data parts"),
        (sharding.num_devices, "devices"),
    ):
        if size % divisor:
            raise ValueError(f"{name}={size} does not split over {divisor} {what}")


def train_batches(dataset: Dataset, train_config, num_parts: int, start_step: int = 0):
    """Endless local batches of this process: for each step, one batch of
    ``train.batch_size / num_parts`` flows from each of its data parts, joined
    in part order. Each part's order depends only on the seed, the part and the
    step, so a resumed run (on any number of processes, with the same
    ``num_parts``) sees the batches an unbroken run sees."""
    part_size = train_config.batch_size // num_parts
    parts = multihost.split_parts(dataset.train_idx, num_parts)
    streams = []
    for part in multihost.local_parts(num_parts):
        if parts[part].size == 0:
            raise ValueError(
                f"data part {part} of {num_parts} holds no training flows "
                f"({dataset.train_idx.size} in all); use fewer parts"
            )
        streams.append(
            iterate_train_batches(
                dataset.model_arrays,
                parts[part],
                part_size,
                seed=multihost.part_seed(train_config.seed, part),
                start_step=start_step,
                class_balanced=train_config.class_balance == "sampled",
                labels=dataset.labels,
                prefetch=train_config.prefetch,
            )
        )
    try:
        while True:
            batches = [next(stream) for stream in streams]
            yield {
                name: np.concatenate([b[name] for b in batches]) for name in batches[0]
            }
    finally:
        for stream in streams:
            stream.close()


def predict_split(
    eval_step, params, dataset: Dataset, indices, batch_size: int, sharding
) -> dict:
    """Probabilities, features and mean loss of the flows ``indices``, each scored
    once by one process and gathered onto every process.

    Returns a dict like ``stfe_jax.train.loop.predict_split``: ``indices`` (n,),
    ``labels`` (n,), ``probs`` (n, C), ``features`` (n, D), ``loss`` (mean
    cross-entropy, None when n = 0), rows in the order of ``indices``.

    Raises:
      RuntimeError: a flow was scored twice or never (a bug, never expected).

    TODO: every process holds every flow's features (n x D floats) afterwards;
    splits of many millions of flows need the features kept where they were
    computed, or only a sample gathered.
    """
    indices = np.asarray(indices, np.int64)
    count = jax.process_count()
    local_size = batch_size // count
    parts = multihost.split_parts(np.arange(indices.size), count)
    num_batches = -(-max(part.size for part in parts) // local_size)
    positions = parts[jax.process_index()]

    kept = {"position": [], "probs": [], "features": [], "loss": []}
    local = iterate_eval_batches(
        dataset.model_arrays, indices[positions], local_size, labels=dataset.labels
    )
    try:
        for b in range(num_batches):
            rows = positions[b * local_size : (b + 1) * local_size]
            batch = next(local, None) if rows.size else None
            if batch is None:  # this process has run out: a fully masked batch
                batch = _masked_batch(dataset, indices[:1], local_size)
            batch.pop("flow_index")
            position = np.full(local_size, -1, np.int64)
            position[: rows.size] = rows
            outputs = eval_step(params, multihost.global_batch(batch, sharding))
            gathered = multihost.gather_rows(
                {
                    **outputs,
                    **multihost.global_batch(
                        {"position": position, "mask": batch["mask"]}, sharding
                    ),
                }
            )
            mask = np.asarray(gathered["mask"])
            for name in kept:
                kept[name].append(np.asarray(gathered[name])[mask])
    finally:
        local.close()

    position = np.concatenate(kept["position"]) if kept["position"] else np.zeros(0)
    if position.size != indices.size or (
        position.size and not np.array_equal(np.sort(position), np.arange(indices.size))
    ):
        raise RuntimeError(
            f"evaluation scored {position.size} rows for {indices.size} flows, "
            "not each flow once"
        )
    order = np.argsort(position)
    num_classes = len(dataset.class_names)
    if indices.size == 0:
        return {
            "indices": indices,
            "labels": dataset.labels[indices],
            "probs": np.zeros((0, num_classes), np.float32),
            "features": np.zeros((0, 0), np.float32),
            "loss": None,
        }
    return {
        "indices": indices,
        "labels": dataset.labels[indices],
        "probs": np.concatenate(kept["probs"])[order],
        "features": np.concatenate(kept["features"])[order],
        "loss": float(np.concatenate(kept["loss"]).mean()),
    }


def _masked_batch(dataset: Dataset, flow: np.ndarray, size: int) -> dict:
    """A batch of ``size`` copies of one flow, every row masked out."""
    batch = next(
        iterate_eval_batches(
            dataset.model_arrays, flow, size, labels=dataset.labels, prefetch=0
        )
    )
    batch["mask"][:] = False
    return batch


def _replicated_state(model, example, train_config, sharding: Sharding):
    """A fresh train state, built once and replicated over the global mesh."""
    create = functools.partial(create_train_state, model, example, train_config)
    return jax.jit(create, out_shardings=sharding.replicated)()


def train_multihost(
    config: ml_collections.ConfigDict,
    dataset,
    workdir: str | pathlib.Path,
    *,
    num_parts: int | None = None,
    resume: bool | None = None,
) -> dict:
    """Trains ``config.model`` on ``dataset`` over every process's devices.

    Every process calls it with the same config and dataset (the flows of the
    dataset are read only where a process's parts and eval shares fall) and the
    same ``workdir``, on storage all processes share (Orbax writes there).

    Args:
      config: the full config; ``train.batch_size`` and ``eval.batch_size`` are
        global (over all processes) and must divide by ``num_parts``, the process
        count and the device count.
      dataset: a ``Dataset`` (or a dict/object with its fields).
      workdir: run directory: ``checkpoints/`` (with ``config.json`` and
        ``threshold.json``) goes below it.
      num_parts: data parts (default: one per process; a multiple of the process
        count). Runs with the same parts see the same global batches.
      resume: continue from ``<workdir>/checkpoints/last`` (default:
        ``config.train.resume``).

    Returns:
      A dict: ``model``, ``class_names``, ``normal_class``, ``history``,
      ``best_step``, ``final_step``, ``early_stopped``, ``interrupted`` (stopped
      at ``train.stop_at_step``, after saving the last checkpoint; then no split
      is scored), ``resumed_from``, ``splits`` (``val`` and ``test`` as
      ``predict_split`` returns them), ``threshold``, ``params`` (final, numpy),
      ``num_parts``, ``process_count``, ``timings`` (``compile_s``, ``train_s``,
      ``steps_per_s``, ``samples_per_s``, ``eval_s``, ``num_devices``) and
      ``checkpoint_dir``.
    """
    started = time.perf_counter()
    dataset = Dataset.from_any(dataset)
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.num_classes = len(dataset.class_names)
    if resume is not None:
        config.train.resume = bool(resume)
    train_config, eval_config = config.train, config.eval
    num_parts = multihost.check_num_parts(num_parts)
    sharding = multihost.global_sharding()
    _check_batch_size("train.batch_size", train_config.batch_size, num_parts, sharding)
    _check_batch_size(
        "eval.batch_size", eval_config.batch_size, jax.process_count(), sharding
    )

    num_classes = len(dataset.class_names)
    weights = class_weights(
        dataset.labels[dataset.train_idx], num_classes, train_config.class_balance
    )
    logging.info(
        "Training %s on %d flows in %d parts (this process holds parts %s), "
        "%d processes, %d devices, global batch %d",
        config.model.name,
        dataset.train_idx.size,
        num_parts,
        list(multihost.local_parts(num_parts)),
        jax.process_count(),
        sharding.num_devices,
        train_config.batch_size,
    )

    model = build_model(config.model)
    example = {
        name: np.asarray(column[dataset.train_idx[:1]])
        for name, column in dataset.model_arrays.items()
    }
    state = _replicated_state(model, example, train_config, sharding)
    checkpoints = MultihostCheckpoints(pathlib.Path(workdir) / "checkpoints")
    if multihost.is_primary():
        checkpoints.write_json("config.json", config.to_dict())
    loop_state = {
        "best_metric": None,
        "best_step": None,
        "evals_without_improvement": 0,
        "early_stopped": False,
        "history": [],
    }
    resumed_from = None
    if train_config.resume and checkpoints.latest_step() is not None:
        state, loop_state = checkpoints.restore_last(state)
        resumed_from = int(multihost.to_host(state.step))
        logging.info("Resumed from step %d", resumed_from)

    train_step = make_train_step(
        weights,
        sharding,
        dropout_seed=train_config.seed + 1,
        schedule=learning_rate_schedule(train_config),
    )
    eval_step = make_eval_step(model.apply, sharding)
    predict = functools.partial(
        predict_split, eval_step, dataset=dataset, sharding=sharding
    )

    timings = {"compile_s": None, "train_s": 0.0, "eval_s": 0.0}
    step = int(multihost.to_host(state.step))
    batches = train_batches(dataset, train_config, num_parts, start_step=step)
    train_started = None
    timed_steps = 0
    interrupted = False
    losses: list = []
    try:
        while step < train_config.steps and not loop_state["early_stopped"]:
            step_started = time.perf_counter()
            batch = multihost.global_batch(next(batches), sharding)
            state, metrics = train_step(state, batch)
            losses.append(metrics["loss"])
            step += 1
            if timings["compile_s"] is None:
                jax.block_until_ready(metrics)
                timings["compile_s"] = time.perf_counter() - step_started
                train_started = time.perf_counter()
            else:
                timed_steps += 1
            if step % train_config.log_every == 0 or step == train_config.steps:
                host = multihost.to_host(metrics)
                logging.info(
                    "step %d/%d: loss %.4f, accuracy %.3f, grad norm %.3f",
                    step,
                    train_config.steps,
                    host["loss"],
                    host["accuracy"],
                    host["grad_norm"],
                )
            if step % train_config.eval_every == 0 or step == train_config.steps:
                jax.block_until_ready(state)
                timings["train_s"] += time.perf_counter() - train_started
                eval_started = time.perf_counter()
                train_loss = float(np.mean(multihost.to_host(losses)))
                losses = []
                _validate(
                    config, dataset, state, predict, checkpoints, loop_state, train_loss
                )
                timings["eval_s"] += time.perf_counter() - eval_started
                train_started = time.perf_counter()
            if train_config.stop_at_step and step == train_config.stop_at_step:
                jax.block_until_ready(state)
                checkpoints.save_last(state, loop_state)
                interrupted = True
                logging.info("Stopped at step %d as configured (stop_at_step)", step)
                break
    finally:
        batches.close()
    jax.block_until_ready(state)
    if train_started is not None and timings["compile_s"] is not None:
        timings["train_s"] += max(time.perf_counter() - train_started, 0.0)
    if timed_steps and timings["train_s"] > 0:
        timings["steps_per_s"] = timed_steps / timings["train_s"]
        timings["samples_per_s"] = timings["steps_per_s"] * train_config.batch_size
    timings["num_devices"] = sharding.num_devices
    results = {
        "model": config.model.name,
        "class_names": list(dataset.class_names),
        "normal_class": dataset.normal_class,
        "history": loop_state["history"],
        "best_step": loop_state["best_step"],
        "final_step": step,
        "early_stopped": loop_state["early_stopped"],
        "interrupted": interrupted,
        "resumed_from": resumed_from,
        "splits": {},
        "threshold": None,
        "params": multihost.to_host(state.params),
        "num_parts": num_parts,
        "process_count": jax.process_count(),
        "timings": timings,
        "checkpoint_dir": str(checkpoints.directory),
    }
    if interrupted:
        checkpoints.close()
        multihost.sync("train_multihost_done")
        return results

    eval_started = time.perf_counter()
    best_state = state
    if checkpoints.best_step() is not None:
        best_state, _ = checkpoints.restore_best(state)
    batch_size = eval_config.batch_size
    splits = {
        name: predict(best_state.params, indices=indices, batch_size=batch_size)
        for name, indices in (("val", dataset.val_idx), ("test", dataset.test_idx))
    }
    threshold = _choose_threshold(splits["val"], dataset.normal_class)
    if multihost.is_primary():
        checkpoints.write_json("threshold.json", threshold)
    timings["eval_s"] += time.perf_counter() - eval_started
    timings["total_s"] = time.perf_counter() - started
    checkpoints.close()
    multihost.sync("train_multihost_done")

    test = splits["test"]
    if test["probs"].shape[0]:
        summary = metrics_lib.classification_metrics(
            test["labels"],
            test["probs"],
            dataset.class_names,
            normal_class=dataset.normal_class,
            threshold=threshold["threshold"],
        )
        logging.info(
            "Test (%d flows, best step %s): accuracy %.4f, macro F1 %.4f",
            test["probs"].shape[0],
            loop_state["best_step"],
            summary["accuracy"],
            summary["macro"]["f1"],
        )
    results.update(splits=splits, threshold=threshold)
    return results


def _choose_threshold(val: dict, normal_class: int) -> dict:
    if val["probs"].shape[0] == 0:
        return {
            "threshold": None,
            "rule": metrics_lib.RULE_ARGMAX,
            "note": "no validation flows: no threshold chosen",
        }
    return metrics_lib.choose_threshold(
        val["labels"], val["probs"], normal_class=normal_class
    )


def _validate(config, dataset, state, predict, checkpoints, loop_state, train_loss):
    """Scores the validation split (the same on every process), updates early
    stopping and saves the checkpoints (every process takes part)."""
    step = int(multihost.to_host(state.step))
    metric_name = config.eval.metric
    entry = {
        "step": step,
        "loss": train_loss,
        "val_loss": None,
        "val_metric": None,
        "val_metric_name": metric_name,
        "val_accuracy": None,
    }
    improved = True  # without validation flows the latest state is the best
    if dataset.val_idx.size:
        val = predict(
            state.params, indices=dataset.val_idx, batch_size=config.eval.batch_size
        )
        value = validation_metric(
            metric_name, val, dataset.class_names, dataset.normal_class
        )
        accuracy = float(np.mean(np.argmax(val["probs"], -1) == val["labels"]))
        entry.update(val_loss=val["loss"], val_metric=value, val_accuracy=accuracy)
        best = loop_state["best_metric"]
        improved = best is None or value > best
        logging.info(
            "Validation at step %d (%d flows): loss %.4f, accuracy %.4f, %s %.4f%s",
            step,
            val["probs"].shape[0],
            val["loss"],
            accuracy,
            metric_name,
            value,
            " (best so far)" if improved else "",
        )
    if improved:
        loop_state["best_metric"] = entry["val_metric"]
        loop_state["best_step"] = step
        loop_state["evals_without_improvement"] = 0
    else:
        loop_state["evals_without_improvement"] += 1
    patience = config.train.early_stopping_patience
    if patience and loop_state["evals_without_improvement"] >= patience:
        loop_state["early_stopped"] = True
        logging.info("Early stop at step %d", step)
    loop_state["history"].append(entry)
    if improved:
        checkpoints.save_best(state, loop_state)
    checkpoints.save_last(state, loop_state)
