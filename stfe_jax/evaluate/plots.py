"""PNG figures of an evaluation: confusion matrix, ROC and PR curves, training
history, and a 2-D projection of learned flow features.

Figures are drawn on matplotlib ``Figure`` objects rendered by the Agg canvas, so
nothing depends on a display or on pyplot's global state. Each function writes
one PNG file and returns its path.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
)

DPI = 110
MAX_PROJECTION_POINTS = 5_000


def _new_figure(width_in: float, height_in: float) -> Figure:
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | pathlib.Path) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_confusion_matrix(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | pathlib.Path,
    *,
    title: str,
) -> pathlib.Path:
    """Confusion matrix (rows true class, columns predicted class; flow counts)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    size = 2.5 + 0.7 * len(class_names)
    figure = _new_figure(size + 1.0, size)
    ax = figure.subplots()
    ConfusionMatrixDisplay(confusion, display_labels=list(class_names)).plot(
        ax=ax, values_format="d", colorbar=True, xticks_rotation=30
    )
    ax.set_title(title)
    return _save(figure, path)


def plot_roc_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | pathlib.Path,
    *,
    title: str,
) -> pathlib.Path:
    """ROC curves of the anomaly score: name -> (is_attack bool (n,), score (n,))."""
    figure = _new_figure(6.0, 5.0)
    ax = figure.subplots()
    for name, (is_attack, score) in curves.items():
        RocCurveDisplay.from_predictions(is_attack, score, ax=ax, name=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set_xlabel("false alarm rate")
    ax.set_ylabel("detection rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    return _save(figure, path)


def plot_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | pathlib.Path,
    *,
    title: str,
) -> pathlib.Path:
    """Precision-recall curves of the anomaly score, attack as the positive class."""
    figure = _new_figure(6.0, 5.0)
    ax = figure.subplots()
    base_rate = None
    for name, (is_attack, score) in curves.items():
        PrecisionRecallDisplay.from_predictions(is_attack, score, ax=ax, name=name)
        base_rate = float(np.mean(is_attack))
    if base_rate is not None:
        ax.axhline(base_rate, linestyle=":", color="grey", label="attack share")
    ax.set_xlabel("recall (detection rate)")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return _save(figure, path)


def _finite_points(history: Sequence[Mapping], key: str) -> list[tuple]:
    """(step, value) of the entries whose ``key`` holds a finite number."""
    return [
        (entry["step"], float(entry[key]))
        for entry in history
        if entry.get(key) is not None and np.isfinite(entry[key])
    ]


def plot_history(
    history: Sequence[Mapping], path: str | pathlib.Path, *, title: str
) -> pathlib.Path:
    """Training loss and the validation metric against the training step.

    ``history`` entries carry ``step`` and any of ``loss``, ``val_loss``,
    ``val_metric`` (its name in ``val_metric_name``, default "validation metric").
    """
    figure = _new_figure(10.0, 4.0)
    loss_ax, metric_ax = figure.subplots(1, 2)
    for key, label in (("loss", "training loss"), ("val_loss", "validation loss")):
        points = _finite_points(history, key)
        if points:
            steps, values = zip(*points, strict=True)
            loss_ax.plot(
                steps, values, marker="." if len(points) < 50 else None, label=label
            )
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    if loss_ax.lines:
        loss_ax.legend(fontsize="small")
    loss_ax.set_title("loss")

    points = _finite_points(history, "val_metric")
    metric_name = next(
        (e["val_metric_name"] for e in history if e.get("val_metric_name")),
        "validation metric",
    )
    if points:
        steps, values = zip(*points, strict=True)
        metric_ax.plot(steps, values, marker="o")
    metric_ax.set_xlabel("step")
    metric_ax.set_ylabel(metric_name)
    metric_ax.set_title(metric_name)
    figure.suptitle(title)
    return _save(figure, path)


def projection_sample(labels: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Row indices of at most ``max_points`` flows, each class capped at an equal
    share so rare attack classes stay visible; leftover room is filled at random.
    """
    labels = np.asarray(labels)
    if labels.shape[0] <= max_points:
        return np.arange(labels.shape[0])
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    quota = max_points // len(classes)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:quota] for c in classes]
    chosen = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(labels.shape[0]), chosen, assume_unique=True)
    fill = rng.choice(rest, size=max_points - chosen.shape[0], replace=False)
    return np.sort(np.concatenate([chosen, fill]))


def plot_feature_projection(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | pathlib.Path,
    *,
    title: str,
    seed: int = 0,
    max_points: int = MAX_PROJECTION_POINTS,
) -> pathlib.Path:
    """PCA projection to 2-D of learned flow features (m, d), coloured by class.

    At most ``max_points`` flows are drawn (see ``projection_sample``); the PCA is
    fitted on those flows.
    """
    labels = np.asarray(labels)
    rows = projection_sample(labels, max_points, seed)
    sample = np.asarray(features[rows], dtype=np.float64).reshape(rows.shape[0], -1)
    n_components = min(2, sample.shape[1], rows.shape[0])
    pca = PCA(n_components=n_components, random_state=seed)
    projected = pca.fit_transform(sample)
    if n_components < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - n_components)))
    explained = np.pad(pca.explained_variance_ratio_, (0, 2 - n_components))

    figure = _new_figure(6.5, 5.5)
    ax = figure.subplots()
    for index, name in enumerate(class_names):
        members = labels[rows] == index
        if members.any():
            ax.scatter(
                projected[members, 0],
                projected[members, 1],
                s=6,
                alpha=0.6,
                label=f"{name} ({int(members.sum())})",
            )
    ax.set_xlabel(f"PC 1 ({explained[0]:.1%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.1%} of variance)")
    ax.set_title(f"{title}\n{rows.shape[0]} of {labels.shape[0]} flows")
    ax.legend(fontsize="small", markerscale=2)
    return _save(figure, path)
