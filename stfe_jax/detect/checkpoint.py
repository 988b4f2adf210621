"""Loading a trained model for detection, and refusing one that does not fit.

A training run leaves in its ``checkpoints/`` folder the resolved config
(``config.json``), how its flows were cut and labelled (``preprocessing.json``),
the validation-chosen threshold (``threshold.json``) and the Orbax ``best`` state.
Detection needs all of them and cuts new captures with the recorded flows config,
so that a flow is seen exactly as in training.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import ml_collections
import numpy as np
from absl import logging

PREPROCESSING_RECORD = "preprocessing.json"
CONFIG_FILE = "config.json"
THRESHOLD_FILE = "threshold.json"
BEST_DIR = "best"

# Model fields that training fills in from the data; checked apart.
_MODEL_FIELDS_SET_BY_TRAINING = ("num_classes",)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for detection (names the file and the field)."""


@dataclasses.dataclass
class Detector:
    """A trained model ready to score flows.

    Attributes:
      checkpoint_dir: the ``checkpoints/`` folder it was loaded from.
      config: the run's resolved config (``flows`` replaced by the recorded one).
      flows_config: the exact flows config (dict) the training store was cut with.
      class_names: name of each class index.
      normal_class: index of the benign class; the anomaly score is 1 - p(benign).
      threshold: anomaly score at or above which a flow is an alert; None means
        the argmax rule (an alert when the most probable class is not benign).
      threshold_source: where the threshold came from ("validation", "flag", ...).
      model: the Flax module.
      params: the best parameters (numpy pytree).
      synthetic: whether the model was trained on the synthetic day.
    """

    checkpoint_dir: pathlib.Path
    config: ml_collections.ConfigDict
    flows_config: dict
    class_names: list[str]
    normal_class: int
    threshold: float | None
    threshold_source: str
    model: Any
    params: Any
    synthetic: bool

    @property
    def model_name(self) -> str:
        """The model's name (mlp, cnn, lstm, cnn_lstm)."""
        return str(self.config.model.name)


def resolve_checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path:
    """The ``checkpoints/`` folder of a model directory, or ``path`` itself.

    Raises:
      CheckpointError: neither ``path`` nor ``path/checkpoints`` holds a
        preprocessing record (the message lists what was looked for).
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    for candidate in (path / "checkpoints", path):
        if (candidate / PREPROCESSING_RECORD).is_file():
            return candidate
    models = sorted(
        p.parent.parent.name for p in path.glob(f"*/checkpoints/{PREPROCESSING_RECORD}")
    )
    hint = (
        f"; it holds models {models}: pass one, e.g. {path / models[0]}"
        if models
        else ""
    )
    raise CheckpointError(
        f"{path}: expected {PREPROCESSING_RECORD} in {path / 'checkpoints'} or in "
        f"{path} (written by training), found none{hint}"
    )


def _read_json(path: pathlib.Path) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (written by training; is the run complete?)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise CheckpointError(
            f"{path}: line {err.lineno} column {err.colno}: not valid JSON ({err.msg})"
        ) from err


def _differences(expected: dict, found: dict, skip=()) -> list[str]:
    """``key: a != b`` for every key whose values differ (missing counts)."""
    lines = []
    for key in sorted(set(expected) | set(found)):
        if key in skip:
            continue
        a, b = expected.get(key, "<absent>"), found.get(key, "<absent>")
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            a, b = list(a), list(b)
        if a != b:
            lines.append(f"{key}: {a!r} != {b!r}")
    return lines


def check_compatible(record: dict, config: dict, record_path: pathlib.Path) -> None:
    """Raises ``CheckpointError`` when the preprocessing record and the config differ.

    Checks the store format name and version against what this code reads, the
    flows section (how flows are cut) and the model section (the network shape),
    and that the model's class count matches the recorded class names.
    """
    from stfe_jax.flows.options import FlowOptions
    from stfe_jax.store import layout

    name = record.get("store_format")
    version = record.get("store_format_version")
    if name != layout.FORMAT_NAME or version != layout.FORMAT_VERSION:
        raise CheckpointError(
            f"{record_path}: store format {name!r} version {version!r}; this code "
            f"reads {layout.FORMAT_NAME!r} version {layout.FORMAT_VERSION}. Retrain, "
            "or detect with the code version that trained it"
        )
    for key in ("flows", "model", "class_names", "normal_class"):
        if key not in record:
            raise CheckpointError(f"{record_path}: field {key!r} missing")
    for section in ("flows", "model"):
        if section not in config:
            raise CheckpointError(
                f"{record_path.parent / CONFIG_FILE}: section {section!r} missing"
            )

    try:
        recorded_flows = FlowOptions.from_config(record["flows"]).to_dict()
        config_flows = FlowOptions.from_config(config["flows"]).to_dict()
    except ValueError as err:
        raise CheckpointError(f"{record_path}: flows config not usable: {err}") from err
    differences = _differences(recorded_flows, config_flows)
    if differences:
        raise CheckpointError(
            f"{record_path.parent}: the config's flows section differs from the one "
            f"the model was trained on (recorded in {PREPROCESSING_RECORD} != "
            f"{CONFIG_FILE}): " + "; ".join(differences)
        )
    differences = _differences(
        record["model"], config["model"], skip=_MODEL_FIELDS_SET_BY_TRAINING
    )
    if differences:
        raise CheckpointError(
            f"{record_path.parent}: the config's model section differs from the one "
            f"the model was trained with ({PREPROCESSING_RECORD} != {CONFIG_FILE}): "
            + "; ".join(differences)
        )
    classes = len(record["class_names"])
    if int(config["model"].get("num_classes", classes)) != classes:
        raise CheckpointError(
            f"{record_path.parent / CONFIG_FILE}: model.num_classes "
            f"{config['model']['num_classes']} != {classes} class names "
            f"{record['class_names']} in {PREPROCESSING_RECORD}"
        )
    if not 0 <= int(record["normal_class"]) < classes:
        raise CheckpointError(
            f"{record_path}: normal_class {record['normal_class']} outside "
            f"0..{classes - 1}"
        )


def example_batch(flows) -> dict:
    """A one-flow model input shaped by a flows config (ConfigDict or dict)."""
    p, b = int(flows["packets_per_flow"]), int(flows["bytes_per_packet"])
    return {
        "packets": np.zeros((1, p, b), np.uint8),
        "packet_caplen": np.zeros((1, p), np.uint16),
        "direction": np.zeros((1, p), np.uint8),
        "iat_s": np.zeros((1, p), np.float32),
        "n_packets": np.ones((1,), np.int32),
    }


def _shapes(tree) -> dict:
    """Flat ``path -> shape`` of a parameter pytree."""
    import jax

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in flat}


def _restore_params(checkpoint_dir: pathlib.Path, config, model) -> Any:
    """The best parameters, checked against the shapes the config's model has.

    Only the ``params`` of the saved train state are used; the state is restored
    without a target (no optimiser is built), which is what keeps loading fast.
    """
    import jax
    import orbax.checkpoint as ocp

    best = checkpoint_dir / BEST_DIR
    steps = (
        sorted(int(p.name) for p in best.glob("[0-9]*") if p.is_dir())
        if (best.is_dir())
        else []
    )
    if not steps:
        raise CheckpointError(f"{best}: no best checkpoint (did training finish?)")
    manager = ocp.CheckpointManager(
        best, options=ocp.CheckpointManagerOptions(read_only=True)
    )
    try:
        restored = manager.restore(
            steps[-1], args=ocp.args.Composite(state=ocp.args.StandardRestore())
        )
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise CheckpointError(
            f"{best / str(steps[-1])}: cannot restore the saved state "
            f"({type(err).__name__}: {err})"
        ) from err
    finally:
        manager.close()
    state = restored["state"]
    params = state.get("params") if isinstance(state, dict) else None
    if params is None:
        raise CheckpointError(f"{best / str(steps[-1])}: the saved state has no params")

    expected = jax.eval_shape(
        lambda: model.init(jax.random.key(0), example_batch(config.flows))["params"]
    )
    want, have = _shapes(expected), _shapes(params)
    if want != have:
        differences = [
            f"{path}: model {want.get(path, '<absent>')} != saved "
            f"{have.get(path, '<absent>')}"
            for path in sorted(set(want) | set(have))
            if want.get(path) != have.get(path)
        ]
        raise CheckpointError(
            f"{best / str(steps[-1])}: the saved parameters do not fit the model that "
            f"{CONFIG_FILE} describes: " + "; ".join(differences[:8])
        )
    return jax.tree_util.tree_map(np.asarray, params)


def load_detector(
    path: str | pathlib.Path, *, threshold: float | None = None
) -> Detector:
    """Loads a trained model for detection from a model dir or its ``checkpoints/``.

    Args:
      path: a training workdir of one model (or ``<workdir>/<model>`` of a
        ``--model=all`` run), or its ``checkpoints/`` folder.
      threshold: anomaly score threshold in [0, 1]; None takes the one chosen on
        the validation split (``threshold.json``).

    Raises:
      CheckpointError: a file is missing or unreadable, the store format is not
        the one this code reads, or the config's flows/model sections differ from
        what the model was trained with (the message lists each difference).
    """
    from stfe_jax.models import build_model

    checkpoint_dir = resolve_checkpoint_dir(path)
    record_path = checkpoint_dir / PREPROCESSING_RECORD
    record = _read_json(record_path)
    config_dict = _read_json(checkpoint_dir / CONFIG_FILE)
    threshold_record = _read_json(checkpoint_dir / THRESHOLD_FILE)
    check_compatible(record, config_dict, record_path)

    config = ml_collections.ConfigDict(config_dict)
    config.flows = ml_collections.ConfigDict(record["flows"])
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"--threshold={threshold}: expected a score in [0, 1]")
        chosen, source = float(threshold), "flag"
    elif threshold_record.get("threshold") is not None:
        chosen, source = float(threshold_record["threshold"]), "validation"
    else:
        chosen = None
        source = f"argmax ({threshold_record.get('note') or 'no threshold recorded'})"

    model = build_model(config.model)
    params = _restore_params(checkpoint_dir, config, model)
    detector = Detector(
        checkpoint_dir=checkpoint_dir,
        config=config,
        flows_config=dict(record["flows"]),
        class_names=[str(name) for name in record["class_names"]],
        normal_class=int(record["normal_class"]),
        threshold=chosen,
        threshold_source=source,
        model=model,
        params=params,
        synthetic=bool(record.get("synthetic", False)),
    )
    logging.info(
        "Loaded %s from %s: classes %s, threshold %s (%s)%s",
        detector.model_name,
        checkpoint_dir,
        detector.class_names,
        "argmax" if chosen is None else f"{chosen:.4f}",
        source,
        "; trained on SYNTHETIC traffic" if detector.synthetic else "",
    )
    return detector
