"""Tests of stfe_jax.evaluate.probes: classifiers on learned features."""

import numpy as np
import pytest

from stfe_jax.evaluate import probes

CLASS_NAMES = ["benign", "scan", "dos"]


def _toy_features(n, separable, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    features = rng.normal(size=(n, 10))
    if separable:
        features[:, :3] += 4.0 * np.eye(3)[labels]
    return features.astype(np.float32), labels


@pytest.fixture(scope="module")
def separable_probe():
    train_x, train_y = _toy_features(600, True, seed=0)
    test_x, test_y = _toy_features(300, True, seed=1)
    return probes.feature_probe(train_x, train_y, test_x, test_y, CLASS_NAMES, 0)


def test_probe_separates_separable_features(separable_probe):
    assert set(separable_probe) == {"logistic_regression", "random_forest"}
    for entry in separable_probe.values():
        m = entry["metrics"]
        assert m["accuracy"] > 0.95, (entry["name"], m["accuracy"])
        assert m["roc_auc"] > 0.98
        assert m["n_flows"] == entry["n_test"] == 300
        assert entry["n_train"] == 600 and entry["n_features"] == 10
        assert entry["fit_s"] > 0


def test_probe_is_near_chance_on_random_features():
    train_x, train_y = _toy_features(600, False, seed=2)
    test_x, test_y = _toy_features(600, False, seed=3)
    result = probes.feature_probe(train_x, train_y, test_x, test_y, CLASS_NAMES, 0)
    for entry in result.values():
        m = entry["metrics"]
        assert 0.2 < m["accuracy"] < 0.45, (entry["name"], m["accuracy"])
        assert 0.38 < m["roc_auc"] < 0.62, (entry["name"], m["roc_auc"])


def test_probe_is_repeatable_with_the_seed(separable_probe):
    train_x, train_y = _toy_features(600, True, seed=0)
    test_x, test_y = _toy_features(300, True, seed=1)
    again = probes.feature_probe(train_x, train_y, test_x, test_y, CLASS_NAMES, 0)
    for kind in again:
        assert again[kind]["metrics"] == separable_probe[kind]["metrics"]


def test_class_missing_from_training_gets_zero_probability():
    train_x, train_y = _toy_features(300, True, seed=4)
    keep = train_y != 2
    test_x, test_y = _toy_features(90, True, seed=5)
    entry = probes.fit_and_evaluate(
        "random_forest",
        train_x[keep],
        train_y[keep],
        test_x,
        test_y,
        CLASS_NAMES,
        seed=0,
    )
    m = entry["metrics"]
    assert m["per_class"]["dos"]["recall"] == 0.0
    assert np.array(m["confusion_matrix"])[:, 2].sum() == 0
    assert sum(map(sum, m["confusion_matrix"])) == 90


def test_training_sample_caps_flows_and_single_class_is_skipped():
    train_x, train_y = _toy_features(500, True, seed=6)
    entry = probes.fit_and_evaluate(
        "logistic_regression",
        train_x,
        train_y,
        train_x,
        train_y,
        CLASS_NAMES,
        seed=0,
        max_train_flows=120,
    )
    assert entry["n_train"] == 120 and entry["n_train_total"] == 500

    skipped = probes.fit_and_evaluate(
        "random_forest",
        train_x,
        np.zeros(500, int),
        train_x,
        train_y,
        CLASS_NAMES,
        seed=0,
    )
    assert "metrics" not in skipped and "1 class" in skipped["skipped"]


def test_mismatched_rows_are_named():
    with pytest.raises(ValueError, match="expected 5 rows"):
        probes.feature_probe(
            np.zeros((4, 2)),
            np.zeros(5, int),
            np.zeros((2, 2)),
            np.zeros(2, int),
            CLASS_NAMES,
            0,
        )


def test_probe_threshold_is_chosen_on_validation_features():
    train_x, train_y = _toy_features(600, True, seed=7)
    val_x, val_y = _toy_features(200, True, seed=8)
    test_x, test_y = _toy_features(300, True, seed=9)
    result = probes.feature_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        CLASS_NAMES,
        0,
        val_features=val_x,
        val_labels=val_y,
    )
    for entry in result.values():
        point = entry["operating_point"]
        assert entry["n_val"] == 200
        assert point["rule"] == "max_f1" and point["n_flows"] == 200
        assert entry["metrics"]["threshold"] == point["threshold"]
        assert entry["metrics_argmax"]["threshold"] is None
        assert entry["metrics"]["accuracy"] > 0.9

    no_val = probes.feature_probe(train_x, train_y, test_x, test_y, CLASS_NAMES, 0)
    assert no_val["random_forest"]["operating_point"] is None
    assert "metrics_argmax" not in no_val["random_forest"]
    with pytest.raises(ValueError, match="both or neither"):
        probes.feature_probe(
            train_x, train_y, test_x, test_y, CLASS_NAMES, 0, val_features=val_x
        )
