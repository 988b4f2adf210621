"""The training loop: batches in, checkpoints and a results dict out.

``train_and_evaluate`` trains one model on a ``Dataset``, validates every
``train.eval_every`` steps (early stopping on ``eval.metric``), keeps the last
and the best state with Orbax, then scores the validation and test splits with
the best parameters, every flow once, and picks the decision threshold on
validation.
"""

from __future__ import annotations

import pathlib
import time

import jax
import ml_collections
import numpy as np
import tensorboardX
from absl import logging

from stfe_jax.evaluate import metrics as metrics_lib
from stfe_jax.models import build_model
from stfe_jax.store.batches import iterate_eval_batches, iterate_train_batches
from stfe_jax.train.checkpoints import RunCheckpoints
from stfe_jax.train.dataset import Dataset
from stfe_jax.train.state import create_train_state, learning_rate_schedule
from stfe_jax.train.steps import make_eval_step, make_sharding, make_train_step

CLASS_BALANCE_MODES = ("weighted", "sampled", "none")
VALIDATION_METRICS = ("macro_f1", "accuracy", "loss", "roc_auc", "pr_auc")


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """Per-class loss weights (float32, (C,)).

    "weighted": ``n / (k * n_c)`` over the k classes present in ``labels`` (a
    class absent from training gets 0); "sampled" and "none": all ones.
    """
    if mode not in CLASS_BALANCE_MODES:
        raise ValueError(
            f"unknown class_balance {mode!r}; expected one of {CLASS_BALANCE_MODES}"
        )
    if mode != "weighted":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = labels.size / (present.sum() * counts[present])
    return weights.astype(np.float32)


def predict_split(eval_step, params, dataset: Dataset, indices, batch_size, sharding):
    """Probabilities, features and mean loss of the flows ``indices``, each once.

    Returns a dict: ``indices`` (n,), ``labels`` (n,), ``probs`` (n, C) float32,
    ``features`` (n, D) float32 and ``loss`` (mean cross-entropy, or None if n=0).
    """
    parts = {"probs": [], "features": [], "loss": []}
    for batch in iterate_eval_batches(
        dataset.model_arrays, indices, batch_size, labels=dataset.labels
    ):
        batch.pop("flow_index")
        mask = batch["mask"]
        outputs = eval_step(params, sharding.put_batch(batch))
        for name in parts:
            parts[name].append(np.asarray(outputs[name])[mask])
    indices = np.asarray(indices, np.int64)
    if not parts["probs"]:
        return {
            "indices": indices,
            "labels": dataset.labels[indices],
            "probs": np.zeros((0, len(dataset.class_names)), np.float32),
            "features": np.zeros((0, 0), np.float32),
            "loss": None,
        }
    return {
        "indices": indices,
        "labels": dataset.labels[indices],
        "probs": np.concatenate(parts["probs"]),
        "features": np.concatenate(parts["features"]),
        "loss": float(np.concatenate(parts["loss"]).mean()),
    }


def validation_metric(name: str, split: dict, class_names, normal_class: int) -> float:
    """The early-stopping metric of a predicted split; higher is better (the
    loss enters negated). An undefined AUC counts as minus infinity."""
    if name not in VALIDATION_METRICS:
        raise ValueError(
            f"unknown eval.metric {name!r}; expected one of {VALIDATION_METRICS}"
        )
    if name == "loss":
        return -split["loss"]
    summary = metrics_lib.classification_metrics(
        split["labels"], split["probs"], class_names, normal_class=normal_class
    )
    value = summary["macro"]["f1"] if name == "macro_f1" else summary[name]
    return float("-inf") if value is None else float(value)


class _Throughput:
    """Training seconds and steps, counted only while steps run (the caller
    pauses it, after blocking on the device, around validation and saving)."""

    def __init__(self):
        self.total_s, self.total_steps = 0.0, 0
        self.window_s, self.window_steps = 0.0, 0
        self._started, self._steps = None, 0

    def step(self):
        if self._started is None:
            self._started = time.perf_counter()
        self._steps += 1

    def pause(self):
        if self._started is not None:
            elapsed = time.perf_counter() - self._started
            self.total_s += elapsed
            self.window_s += elapsed
            self.total_steps += self._steps
            self.window_steps += self._steps
        self._started, self._steps = None, 0

    def window_rate(self) -> float:
        """Steps per second since the previous call."""
        rate = self.window_steps / self.window_s if self.window_s > 0 else 0.0
        self.window_s, self.window_steps = 0.0, 0
        return rate


def _prepare_config(config, dataset: Dataset, resume):
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.num_classes = len(dataset.class_names)
    if resume is not None:
        config.train.resume = bool(resume)
    return config


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    dataset,
    workdir: str | pathlib.Path,
    *,
    resume: bool | None = None,
) -> dict:
    """Trains ``config.model`` on ``dataset`` and evaluates it.

    Args:
      config: the full config (``model``, ``train``, ``eval`` are read; the whole
        resolved config is written to ``<workdir>/checkpoints/config.json``).
      dataset: a ``Dataset`` (or a dict/object with its fields).
      workdir: run directory: ``checkpoints/`` and ``tensorboard/`` go below it.
      resume: continue from ``<workdir>/checkpoints/last`` (default:
        ``config.train.resume``). The batch order and dropout depend only on the
        seed and the step, so a resumed run ends where an unbroken one ends.

    Returns:
      A dict: ``model``, ``class_names``, ``normal_class``; ``splits`` with
      ``train`` (at most ``eval.max_feature_flows`` training flows), ``val`` and
      ``test``, each a dict of ``indices``, ``labels``, ``probs`` (n, C: the
      probability of each class), ``features`` (n, D: the layer before the
      classifier) and ``loss``, scored with the best parameters; ``threshold``
      (``evaluate.metrics.choose_threshold`` on validation); ``history`` (one entry
      per validation: ``step``, ``loss``, ``val_loss``, ``val_metric``,
      ``val_metric_name``, ``val_accuracy``); ``timings`` (``compile_s``,
      ``train_s``, ``steps_per_s``, ``samples_per_s``, ``input_wait_share``,
      ``eval_s``, ``total_s``, ``num_devices``); ``best_step``, ``final_step``,
      ``early_stopped``, ``interrupted`` (stopped at ``train.stop_at_step``; then
      no split is scored), ``resumed_from``, ``class_weights``, ``params`` (final
      parameters, numpy) and ``checkpoint_dir``.
    """
    started = time.perf_counter()
    dataset = Dataset.from_any(dataset)
    config = _prepare_config(config, dataset, resume)
    train_config, eval_config = config.train, config.eval
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    sharding = make_sharding(train_config.data_parallel)
    for name, size in (
        ("train.batch_size", train_config.batch_size),
        ("eval.batch_size", eval_config.batch_size),
    ):
        if size % sharding.num_devices:
            raise ValueError(
                f"{name}={size} does not split over {sharding.num_devices} devices"
            )
    num_classes = len(dataset.class_names)
    normal_class = dataset.normal_class
    train_labels = dataset.labels[dataset.train_idx]
    weights = class_weights(train_labels, num_classes, train_config.class_balance)
    logging.info(
        "Training %s on %d flows (%d val, %d test), %d classes %s, class weights %s, "
        "%d devices",
        config.model.name,
        dataset.train_idx.size,
        dataset.val_idx.size,
        dataset.test_idx.size,
        num_classes,
        dataset.class_names,
        np.round(weights, 3).tolist(),
        sharding.num_devices,
    )

    model = build_model(config.model)
    example = {
        name: np.asarray(column[dataset.train_idx[:1]])
        for name, column in dataset.model_arrays.items()
    }
    state = create_train_state(model, example, train_config, sharding.replicated)
    checkpoints = RunCheckpoints(workdir / "checkpoints")
    if not train_config.resume and checkpoints.latest_step() is not None:
        checkpoints.close()
        raise FileExistsError(
            f"{checkpoints.directory} holds a run saved at step "
            f"{checkpoints.latest_step()}: resume it (train.resume=True) or train "
            "into an empty workdir"
        )
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
        resumed_from = int(state.step)
        logging.info("Resumed from step %d of %s", resumed_from, checkpoints.directory)

    schedule = learning_rate_schedule(train_config)
    train_step = make_train_step(
        weights, sharding, dropout_seed=train_config.seed + 1, schedule=schedule
    )
    eval_step = make_eval_step(model.apply, sharding)
    writer = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))

    state, timings = _train_loop(
        config,
        dataset,
        state,
        loop_state,
        train_step,
        eval_step,
        sharding,
        checkpoints,
        writer,
    )
    interrupted = timings.pop("interrupted")

    results = {
        "model": config.model.name,
        "class_names": list(dataset.class_names),
        "normal_class": normal_class,
        "history": loop_state["history"],
        "best_step": loop_state["best_step"],
        "final_step": int(state.step),
        "early_stopped": loop_state["early_stopped"],
        "interrupted": interrupted,
        "resumed_from": resumed_from,
        "class_weights": weights.tolist(),
        "params": jax.device_get(state.params),
        "checkpoint_dir": str(checkpoints.directory),
        "dataset": {
            "n_train": int(dataset.train_idx.size),
            "n_val": int(dataset.val_idx.size),
            "n_test": int(dataset.test_idx.size),
        },
    }
    if interrupted:
        checkpoints.close()
        writer.close()
        results["timings"] = timings
        return results

    eval_started = time.perf_counter()
    best_state = state
    if checkpoints.best_step() is not None:
        best_state, _ = checkpoints.restore_best(state)
    splits = _score_splits(config, dataset, eval_step, best_state.params, sharding)
    threshold = _choose_threshold(splits["val"], normal_class)
    threshold.update(
        {
            "score": f"1 - p({dataset.class_names[normal_class]})",
            "normal_class": normal_class,
            "class_names": list(dataset.class_names),
            "best_step": loop_state["best_step"],
        }
    )
    checkpoints.write_json("threshold.json", threshold)
    timings["eval_s"] += time.perf_counter() - eval_started
    timings["total_s"] = time.perf_counter() - started
    checkpoints.close()
    writer.close()

    test = splits["test"]
    if test["probs"].shape[0]:
        summary = metrics_lib.classification_metrics(
            test["labels"],
            test["probs"],
            dataset.class_names,
            normal_class=normal_class,
            threshold=threshold["threshold"],
        )
        logging.info(
            "Test (%d flows, best step %s): accuracy %.4f, macro F1 %.4f, "
            "detection rate %s, false alarm rate %s, ROC AUC %s",
            test["probs"].shape[0],
            loop_state["best_step"],
            summary["accuracy"],
            summary["macro"]["f1"],
            summary["detection_rate"],
            summary["false_alarm_rate"],
            summary["roc_auc"],
        )
    results.update(splits=splits, threshold=threshold, timings=timings)
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


def _score_splits(config, dataset: Dataset, eval_step, params, sharding) -> dict:
    """Validation, test and a sample of training flows scored with ``params``."""
    train_idx = dataset.train_idx
    limit = config.eval.max_feature_flows
    if train_idx.size > limit:
        rng = np.random.default_rng(config.train.seed)
        train_idx = np.sort(rng.choice(train_idx, limit, replace=False))
    batch_size = config.eval.batch_size
    return {
        name: predict_split(eval_step, params, dataset, indices, batch_size, sharding)
        for name, indices in (
            ("train", train_idx),
            ("val", dataset.val_idx),
            ("test", dataset.test_idx),
        )
    }


def _train_loop(
    config,
    dataset: Dataset,
    state,
    loop_state: dict,
    train_step,
    eval_step,
    sharding,
    checkpoints: RunCheckpoints,
    writer,
) -> dict:
    """Runs the steps from the state's step to ``train.steps`` (or an early stop).

    Updates ``loop_state`` in place; returns the final state and the timings
    (with ``interrupted``: whether the run stopped at ``train.stop_at_step``).
    """
    train_config = config.train
    start_step = int(state.step)
    batch_size = train_config.batch_size
    timings = {
        "compile_s": None,
        "train_s": 0.0,
        "steps_per_s": None,
        "samples_per_s": None,
        "samples_per_s_per_device": None,
        "input_wait_share": None,
        "eval_s": 0.0,
        "num_devices": sharding.num_devices,
        "interrupted": False,
    }
    if loop_state["early_stopped"] or start_step >= train_config.steps:
        return state, timings

    batches = iterate_train_batches(
        dataset.model_arrays,
        dataset.train_idx,
        batch_size,
        seed=train_config.seed,
        start_step=start_step,
        class_balanced=train_config.class_balance == "sampled",
        labels=dataset.labels,
        prefetch=train_config.prefetch,
        transform=sharding.put_batch if train_config.prefetch else None,
    )
    throughput = _Throughput()
    input_wait_s = 0.0
    pending: list[dict] = []
    # Per-step training losses since the last validation; a stopped run keeps
    # them in its checkpoint so the resumed history matches an unbroken one.
    losses_since_eval: list[float] = loop_state.pop("losses_since_eval", [])
    try:
        for step in range(start_step, train_config.steps):
            done = step + 1
            first = timings["compile_s"] is None
            if not first:
                throughput.step()
            wait_started = time.perf_counter()
            batch = next(batches)
            if not train_config.prefetch:
                batch = sharding.put_batch(batch)
            if not first:
                input_wait_s += time.perf_counter() - wait_started
            state, metrics = train_step(state, batch)
            pending.append(metrics)

            if first:
                jax.block_until_ready(metrics)
                timings["compile_s"] = time.perf_counter() - wait_started
                logging.info(
                    "First step (compile and run) took %.2f s", timings["compile_s"]
                )

            if done % train_config.log_every == 0 or done == train_config.steps:
                fetched = jax.device_get(pending)
                throughput.pause()
                pending = []
                means = _mean_metrics(fetched)
                losses_since_eval.extend(float(m["loss"]) for m in fetched)
                rate = throughput.window_rate()
                logging.info(
                    "step %d/%d: loss %.4f, accuracy %.3f, grad norm %.3f, lr %.2e; "
                    "%.2f steps/s, %.0f samples/s",
                    done,
                    train_config.steps,
                    means["loss"],
                    means["accuracy"],
                    means["grad_norm"],
                    means.get("learning_rate", float("nan")),
                    rate,
                    rate * batch_size,
                )
                for name, value in means.items():
                    writer.add_scalar(f"train/{name}", value, done)
                writer.add_scalar("train/steps_per_s", rate, done)
                writer.add_scalar("train/samples_per_s", rate * batch_size, done)

            if done % train_config.eval_every == 0 or done == train_config.steps:
                jax.block_until_ready(state)
                throughput.pause()
                eval_started = time.perf_counter()
                losses_since_eval.extend(
                    float(m["loss"]) for m in jax.device_get(pending)
                )
                pending = []
                _validate(
                    config,
                    dataset,
                    state,
                    eval_step,
                    sharding,
                    checkpoints,
                    writer,
                    loop_state,
                    losses_since_eval,
                )
                losses_since_eval = []
                timings["eval_s"] += time.perf_counter() - eval_started

            if train_config.stop_at_step and done == train_config.stop_at_step:
                jax.block_until_ready(state)
                throughput.pause()
                losses_since_eval.extend(
                    float(m["loss"]) for m in jax.device_get(pending)
                )
                checkpoints.save_last(
                    state, dict(loop_state, losses_since_eval=losses_since_eval)
                )
                timings["interrupted"] = True
                logging.info("Stopped at step %d as configured (stop_at_step)", done)
                break
            if loop_state["early_stopped"]:
                break
    finally:
        batches.close()

    jax.block_until_ready(state)
    throughput.pause()
    timings["train_s"] = throughput.total_s
    if throughput.total_steps and throughput.total_s > 0:
        timings["steps_per_s"] = throughput.total_steps / throughput.total_s
        timings["samples_per_s"] = timings["steps_per_s"] * batch_size
        timings["samples_per_s_per_device"] = (
            timings["samples_per_s"] / sharding.num_devices
        )
        timings["input_wait_share"] = input_wait_s / throughput.total_s
    logging.info(
        "Trained %d timed steps in %.1f s after a %.2f s first step: %s steps/s, "
        "%s samples/s",
        throughput.total_steps,
        throughput.total_s,
        timings["compile_s"] or 0.0,
        timings["steps_per_s"],
        timings["samples_per_s"],
    )
    return state, timings


def _mean_metrics(metrics: list[dict]) -> dict:
    return {name: float(np.mean([m[name] for m in metrics])) for name in metrics[0]}


def _validate(
    config,
    dataset,
    state,
    eval_step,
    sharding,
    checkpoints,
    writer,
    loop_state,
    train_losses,
) -> None:
    """Scores the validation split, updates early stopping, saves checkpoints."""
    step = int(state.step)
    metric_name = config.eval.metric
    entry = {
        "step": step,
        "loss": float(np.mean(train_losses)) if train_losses else None,
        "val_loss": None,
        "val_metric": None,
        "val_metric_name": metric_name,
        "val_accuracy": None,
    }
    improved = False
    if dataset.val_idx.size:
        val = predict_split(
            eval_step,
            state.params,
            dataset,
            dataset.val_idx,
            config.eval.batch_size,
            sharding,
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
        writer.add_scalar("val/loss", val["loss"], step)
        writer.add_scalar("val/accuracy", accuracy, step)
        writer.add_scalar(f"val/{metric_name}", value, step)
    else:
        improved = True  # without validation flows the latest state is the best

    if improved:
        loop_state["best_metric"] = entry["val_metric"]
        loop_state["best_step"] = step
        loop_state["evals_without_improvement"] = 0
    else:
        loop_state["evals_without_improvement"] += 1
    patience = config.train.early_stopping_patience
    if patience and loop_state["evals_without_improvement"] >= patience:
        loop_state["early_stopped"] = True
        logging.info(
            "Early stop at step %d: %d validations without a better %s than %.4f "
            "(step %d)",
            step,
            patience,
            metric_name,
            loop_state["best_metric"],
            loop_state["best_step"],
        )
    loop_state["history"].append(entry)
    if improved:
        checkpoints.save_best(state, loop_state)
    checkpoints.save_last(state, loop_state)
