"""Probes of learned features: classical classifiers trained on a model's features.

The second check of the method: the layer before a network's classifier is
extracted for training, validation and test flows, and scikit-learn's logistic
regression and random forest are trained on it. Their test metrics compare the
features themselves, apart from the network's own classifier head.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from absl import logging
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stfe_jax.evaluate import metrics as metrics_lib

# Training flows a probe is fitted on at most (a seeded sample beyond that).
MAX_PROBE_TRAIN_FLOWS = 100_000
RANDOM_FOREST_TREES = 100


def class_probabilities(classifier, features: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` spread over all C classes, float64 (n, C).

    A classifier only knows the classes seen in training; the columns of the
    others stay 0.
    """
    probs = np.zeros((features.shape[0], n_classes), dtype=np.float64)
    probs[:, np.asarray(classifier.classes_, dtype=np.int64)] = (
        classifier.predict_proba(features)
    )
    return probs


def training_sample(n_flows: int, max_flows: int | None, seed: int) -> np.ndarray:
    """Sorted row indices of at most ``max_flows`` of ``n_flows`` (seeded)."""
    if max_flows is None or n_flows <= max_flows:
        return np.arange(n_flows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_flows, size=max_flows, replace=False))


def make_classifier(kind: str, seed: int):
    """A fresh scikit-learn classifier: "logistic_regression" or "random_forest".

    Both weight classes inversely to their frequency ("balanced"), since attack
    flows are rare; logistic regression sees standardised features.
    """
    if kind == "logistic_regression":
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(
                max_iter=1_000, class_weight="balanced", random_state=seed
            ),
        )
    if kind == "random_forest":
        return RandomForestClassifier(
            n_estimators=RANDOM_FOREST_TREES,
            class_weight="balanced",
            min_samples_leaf=2,
            n_jobs=1,
            random_state=seed,
        )
    raise ValueError(
        f"classifier: expected 'logistic_regression' or 'random_forest', found {kind!r}"
    )


CLASSIFIER_NAMES = {
    "logistic_regression": "logistic regression",
    "random_forest": "random forest",
}


def fit_and_evaluate(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    class_names: Sequence[str],
    *,
    seed: int,
    normal_class: int = 0,
    name: str | None = None,
    max_train_flows: int | None = MAX_PROBE_TRAIN_FLOWS,
    feature_names: Sequence[str] | None = None,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
) -> dict:
    """Fits one classifier (see ``make_classifier``) and evaluates it on test.

    With validation flows (``val_x``, ``val_y``) the anomaly-score threshold is
    chosen on them by ``metrics.choose_threshold`` (max F1), as for the networks;
    without, the classifier predicts its most probable class.

    Returns ``name``, ``classifier``, ``n_train`` (flows fitted on), ``n_train_total``,
    ``n_test``, ``n_val``, ``fit_s`` (seconds), ``operating_point`` (the
    ``choose_threshold`` dict, or None) and ``metrics`` (``classification_metrics``
    of the test flows at that threshold), plus ``metrics_argmax`` when a threshold
    was chosen; or ``skipped`` (the reason) instead of metrics when the training
    flows hold a single class. With ``feature_names`` (one per feature column) a
    random forest also reports ``feature_importances`` (name -> impurity
    importance, largest first).
    """
    name = name or CLASSIFIER_NAMES[kind]
    train_x = np.asarray(train_x, dtype=np.float32).reshape(len(train_y), -1)
    test_x = np.asarray(test_x, dtype=np.float32).reshape(len(test_y), -1)
    train_y = np.asarray(train_y, dtype=np.int64)
    test_y = np.asarray(test_y, dtype=np.int64)
    rows = training_sample(train_y.shape[0], max_train_flows, seed)
    entry = {
        "name": name,
        "classifier": kind,
        "n_train": int(rows.shape[0]),
        "n_train_total": int(train_y.shape[0]),
        "n_test": int(test_y.shape[0]),
        "n_val": 0 if val_y is None else int(len(val_y)),
        "n_features": int(train_x.shape[1]),
        "operating_point": None,
    }
    present = np.unique(train_y[rows])
    if present.shape[0] < 2:
        entry["skipped"] = (
            f"training flows hold {present.shape[0]} class(es); a classifier "
            "needs at least two"
        )
        logging.warning("%s: %s", name, entry["skipped"])
        return entry

    classifier = make_classifier(kind, seed)
    start = time.perf_counter()
    classifier.fit(train_x[rows], train_y[rows])
    entry["fit_s"] = time.perf_counter() - start
    if feature_names is not None and hasattr(classifier, "feature_importances_"):
        ranked = sorted(
            zip(feature_names, classifier.feature_importances_, strict=True),
            key=lambda item: -item[1],
        )
        entry["feature_importances"] = {k: float(v) for k, v in ranked}
    threshold = None
    if entry["n_val"] > 0:
        val_x = np.asarray(val_x, dtype=np.float32).reshape(entry["n_val"], -1)
        point = metrics_lib.choose_threshold(
            np.asarray(val_y, dtype=np.int64),
            class_probabilities(classifier, val_x, len(class_names)),
            normal_class=normal_class,
        )
        entry["operating_point"] = point
        threshold = point["threshold"]
    probs = class_probabilities(classifier, test_x, len(class_names))
    entry["metrics"] = metrics_lib.classification_metrics(
        test_y, probs, class_names, normal_class=normal_class, threshold=threshold
    )
    if threshold is not None:
        entry["metrics_argmax"] = metrics_lib.classification_metrics(
            test_y, probs, class_names, normal_class=normal_class
        )
    logging.info(
        "%s: fitted on %d flows x %d features in %.1f s; test accuracy %.4f, "
        "macro F1 %.4f",
        name,
        entry["n_train"],
        entry["n_features"],
        entry["fit_s"],
        entry["metrics"]["accuracy"],
        entry["metrics"]["macro"]["f1"],
    )
    return entry


def feature_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
    seed: int,
    *,
    normal_class: int = 0,
    max_train_flows: int | None = MAX_PROBE_TRAIN_FLOWS,
    val_features: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
) -> dict:
    """Trains logistic regression and a random forest on learned flow features.

    Args:
      train_features: float (m, d), learned features of training flows.
      train_labels: int (m,), their classes.
      test_features: float (k, d), learned features of test flows.
      test_labels: int (k,), their classes.
      class_names: C names in class-index order.
      seed: seed of the training sample and the classifiers.
      normal_class: index of the benign class.
      max_train_flows: fit on a seeded sample of at most this many training flows.
      val_features: optional float (v, d), learned features of validation flows,
        on which each probe's anomaly-score threshold is chosen.
      val_labels: int (v,), their classes.

    Returns:
      ``{"logistic_regression": entry, "random_forest": entry}``, each entry as
      returned by ``fit_and_evaluate``.
    """
    if np.asarray(train_features).shape[0] != len(train_labels):
        raise ValueError(
            f"train_features: expected {len(train_labels)} rows (one per label), "
            f"found {np.asarray(train_features).shape[0]}"
        )
    if np.asarray(test_features).shape[0] != len(test_labels):
        raise ValueError(
            f"test_features: expected {len(test_labels)} rows (one per label), "
            f"found {np.asarray(test_features).shape[0]}"
        )
    if (val_features is None) != (val_labels is None):
        raise ValueError("val_features and val_labels: give both or neither")
    if val_features is not None and np.asarray(val_features).shape[0] != len(
        val_labels
    ):
        raise ValueError(
            f"val_features: expected {len(val_labels)} rows (one per label), "
            f"found {np.asarray(val_features).shape[0]}"
        )
    return {
        kind: fit_and_evaluate(
            kind,
            train_features,
            train_labels,
            test_features,
            test_labels,
            class_names,
            seed=seed,
            normal_class=normal_class,
            max_train_flows=max_train_flows,
            val_x=val_features,
            val_y=val_labels,
        )
        for kind in ("logistic_regression", "random_forest")
    }
