"""Tests of stfe_jax.evaluate.plots: valid, non-blank PNG files."""

import matplotlib.image
import numpy as np
import pytest

from stfe_jax.evaluate import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000, len(data)
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


@pytest.fixture()
def scores():
    rng = np.random.default_rng(0)
    is_attack = rng.random(300) < 0.2
    return is_attack, rng.random(300) * 0.6 + 0.4 * is_attack


def test_confusion_matrix_png(tmp_path):
    path = plots.plot_confusion_matrix(
        [[50, 3, 0], [4, 20, 1], [0, 2, 9]],
        ["benign", "scan", "dos"],
        tmp_path / "cm.png",
        title="synthetic",
    )
    assert path == tmp_path / "cm.png"
    _assert_png(path)


def test_roc_and_pr_pngs(tmp_path, scores):
    curves = {"cnn_lstm": scores, "mlp": (scores[0], scores[1][::-1])}
    _assert_png(plots.plot_roc_curves(curves, tmp_path / "roc.png", title="t"))
    _assert_png(plots.plot_pr_curves(curves, tmp_path / "pr.png", title="t"))


def test_history_png_skips_missing_and_infinite_values(tmp_path):
    history = [
        {"step": 0, "loss": 1.0, "val_metric": float("-inf")},
        {"step": 5, "loss": 0.6, "val_metric": None},
        {
            "step": 10,
            "loss": 0.4,
            "val_loss": 0.5,
            "val_metric": 0.7,
            "val_metric_name": "macro_f1",
        },
        {"step": 15, "loss": 0.3, "val_loss": 0.45, "val_metric": 0.8},
    ]
    assert plots._finite_points(history, "val_metric") == [(10, 0.7), (15, 0.8)]
    _assert_png(plots.plot_history(history, tmp_path / "history.png", title="t"))


def test_projection_sample_caps_points_and_keeps_rare_classes():
    labels = np.zeros(20_000, dtype=int)
    labels[:40] = 1  # a rare attack class
    rows = plots.projection_sample(labels, 5_000, seed=0)
    assert rows.shape == (5_000,)
    assert np.unique(rows).shape == (5_000,)
    assert (labels[rows] == 1).sum() == 40
    small = plots.projection_sample(labels[:100], 5_000, seed=0)
    np.testing.assert_array_equal(small, np.arange(100))


def test_feature_projection_png(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 6_000)
    features = rng.normal(size=(6_000, 12))
    features[:, :3] += 3.0 * np.eye(3)[labels]  # one direction per class
    path = plots.plot_feature_projection(
        features,
        labels,
        ["benign", "scan", "dos"],
        tmp_path / "proj.png",
        title="learned features",
        seed=0,
    )
    _assert_png(path)


def test_feature_projection_of_one_feature(tmp_path):
    labels = np.array([0, 1, 0, 1])
    path = plots.plot_feature_projection(
        np.array([[0.0], [1.0], [0.1], [0.9]]),
        labels,
        ["benign", "attack"],
        tmp_path / "one.png",
        title="1-D",
    )
    _assert_png(path)
