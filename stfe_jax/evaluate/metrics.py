"""Classification metrics of flow predictions, computed with scikit-learn.

A model (or a probe, or a baseline) gives, for each test flow, a probability per
class. ``classification_metrics`` turns those into the figures a security reader
expects: accuracy; per-class and macro precision, recall and F1; the detection
rate and false-alarm rate of the attack-versus-normal decision; ROC AUC and PR AUC
of the anomaly score ``1 - p(normal)``; the confusion matrix; the threshold used.
``choose_threshold`` picks that threshold on validation flows. ``EvalAccumulator``
gathers masked eval batches on the host so every flow is counted exactly once.

Every result is a plain JSON-serialisable dict (floats, ints, lists, None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

# The rule behind each operating point ``choose_threshold`` can pick.
RULE_MAX_F1 = "max_f1"
RULE_MAX_DETECTION_UNDER_FALSE_ALARM = "max_detection_rate_under_false_alarm_rate"
RULE_ARGMAX = "argmax"


def _check_inputs(
    labels: np.ndarray, probs: np.ndarray, n_classes: int | None, normal_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validates and converts labels (n,) and probs (n, C); raises ValueError."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.ndim != 1:
        raise ValueError(f"labels: expected shape (n,), found {labels.shape}")
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"probs: expected shape ({labels.shape[0]}, n_classes), found {probs.shape}"
        )
    if n_classes is not None and probs.shape[1] != n_classes:
        raise ValueError(
            f"probs: expected {n_classes} columns (one per class name), "
            f"found {probs.shape[1]}"
        )
    if labels.shape[0] == 0:
        raise ValueError("no flows to evaluate: labels is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected an integer dtype, found {labels.dtype}")
    n_classes = probs.shape[1]
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"labels: expected class indices in [0, {n_classes}), found "
            f"{int(labels[first])} at flow {first}"
        )
    if not np.isfinite(probs).all():
        first = int(np.flatnonzero(~np.isfinite(probs).all(axis=1))[0])
        raise ValueError(
            f"probs: expected finite values, found {probs[first]} at flow {first}"
        )
    row_sums = probs.sum(axis=1)
    off = (probs < 0).any(axis=1) | (np.abs(row_sums - 1.0) > 1e-3)
    if off.any():
        first = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"probs: expected non-negative rows summing to 1 (probabilities, not "
            f"logits), found {probs[first]} at flow {first}"
        )
    if not 0 <= normal_class < n_classes:
        raise ValueError(
            f"normal_class: expected an index in [0, {n_classes}), found {normal_class}"
        )
    return labels.astype(np.int64), probs


def anomaly_score(probs: np.ndarray, normal_class: int = 0) -> np.ndarray:
    """The anomaly score of each flow: ``1 - p(normal)``, in [0, 1] (float64, (n,))."""
    probs = np.asarray(probs, dtype=np.float64)
    return 1.0 - probs[:, normal_class]


def predict_classes(
    probs: np.ndarray, *, normal_class: int = 0, threshold: float | None = None
) -> np.ndarray:
    """Predicted class per flow (int64, (n,)).

    With ``threshold=None`` the prediction is the most probable class. With a
    threshold, a flow whose anomaly score ``1 - p(normal)`` is at least the
    threshold is flagged and gets its most probable non-normal class; any other
    flow is predicted normal.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if threshold is None:
        return np.argmax(probs, axis=1).astype(np.int64)
    flagged = anomaly_score(probs, normal_class) >= threshold
    others = probs.copy()
    others[:, normal_class] = -np.inf
    attack_class = np.argmax(others, axis=1)
    return np.where(flagged, attack_class, normal_class).astype(np.int64)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else float(numerator) / float(denominator)


def classification_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    normal_class: int = 0,
    threshold: float | None = None,
) -> dict:
    """Metrics of class probabilities against true labels.

    Args:
      labels: int (n,), the true class index of each flow.
      probs: float (n, C), class probabilities of each flow (rows sum to 1).
      class_names: C names, in class-index order.
      normal_class: index of the benign class; every other class is an attack.
      threshold: anomaly-score threshold (see ``predict_classes``); None predicts
        the most probable class.

    Returns:
      A JSON-serialisable dict with keys ``n_flows``, ``class_names``,
      ``normal_class``, ``threshold``, ``decision_rule``, ``accuracy``,
      ``per_class`` (name -> precision, recall, f1, support), ``macro``
      (precision, recall, f1 averaged over the classes that occur in the labels
      or the predictions, scikit-learn's default), ``detection_rate`` (recall of
      the attack-versus-normal decision; None without attack flows),
      ``false_alarm_rate`` (share of normal flows flagged; None without normal
      flows), ``binary_counts`` (tn, fp, fn, tp with attack as positive),
      ``roc_auc`` and ``pr_auc`` (of the anomaly score; PR AUC is the average
      precision; None when only one of normal/attack is present, with the reason
      in ``auc_note``), ``log_loss`` and ``confusion_matrix`` (rows true class,
      columns predicted class, C x C counts).
    """
    class_names = [str(name) for name in class_names]
    labels, probs = _check_inputs(labels, probs, len(class_names), normal_class)
    n_classes = len(class_names)
    class_indices = list(range(n_classes))
    predicted = predict_classes(probs, normal_class=normal_class, threshold=threshold)

    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=class_indices, zero_division=0
    )
    macro_p, macro_r, macro_f1, _ = skm.precision_recall_fscore_support(
        labels, predicted, average="macro", zero_division=0
    )

    is_attack = labels != normal_class
    flagged = predicted != normal_class
    tn, fp, fn, tp = skm.confusion_matrix(
        is_attack, flagged, labels=[False, True]
    ).ravel()
    score = anomaly_score(probs, normal_class)
    if is_attack.all() or not is_attack.any():
        present = "attack" if is_attack.any() else "normal"
        roc_auc = pr_auc = None
        auc_note = f"only {present} flows in the labels: AUC is undefined"
    else:
        roc_auc = float(skm.roc_auc_score(is_attack, score))
        pr_auc = float(skm.average_precision_score(is_attack, score))
        auc_note = None

    return {
        "n_flows": int(labels.shape[0]),
        "class_names": class_names,
        "normal_class": int(normal_class),
        "threshold": None if threshold is None else float(threshold),
        "decision_rule": (
            RULE_ARGMAX if threshold is None else "anomaly_score >= threshold"
        ),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro": {
            "precision": float(macro_p),
            "recall": float(macro_r),
            "f1": float(macro_f1),
        },
        "detection_rate": _ratio(int(tp), int(tp + fn)),
        "false_alarm_rate": _ratio(int(fp), int(fp + tn)),
        "binary_counts": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "auc_note": auc_note,
        "log_loss": float(  # rows renormalised: float32 softmax sums drift
            skm.log_loss(
                labels, probs / probs.sum(axis=1, keepdims=True), labels=class_indices
            )
        ),
        "confusion_matrix": skm.confusion_matrix(
            labels, predicted, labels=class_indices
        ).tolist(),
    }


def choose_threshold(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    normal_class: int = 0,
    max_false_alarm_rate: float | None = None,
) -> dict:
    """Picks an anomaly-score threshold on validation flows.

    The decision is attack-versus-normal: a flow is flagged when
    ``1 - p(normal) >= threshold``. Without ``max_false_alarm_rate`` the threshold
    maximises the F1 of that decision (attack as the positive class), read off
    scikit-learn's precision-recall curve. With ``max_false_alarm_rate`` (a share
    of normal flows, e.g. 0.01) it gives the highest detection rate whose
    false-alarm rate on these flows stays within the bound, read off the ROC curve;
    among equal detection rates the highest threshold (fewest alarms) wins.

    Args:
      labels: int (n,), true class index per validation flow.
      probs: float (n, C), class probabilities per validation flow.
      normal_class: index of the benign class.
      max_false_alarm_rate: optional bound in [0, 1] on the false-alarm rate.

    Returns:
      A dict: ``threshold`` (float, or None when the validation flows hold only
      one of normal/attack and no operating point can be chosen: predict by
      argmax then), ``rule``, ``note`` (why None, else None), and the validation
      ``detection_rate``, ``false_alarm_rate`` and ``f1`` at that threshold,
      ``max_false_alarm_rate`` and ``n_flows``.
    """
    labels, probs = _check_inputs(labels, probs, None, normal_class)
    is_attack = labels != normal_class
    score = anomaly_score(probs, normal_class)
    rule = (
        RULE_MAX_F1
        if max_false_alarm_rate is None
        else RULE_MAX_DETECTION_UNDER_FALSE_ALARM
    )
    point = {
        "threshold": None,
        "rule": rule,
        "note": None,
        "max_false_alarm_rate": max_false_alarm_rate,
        "n_flows": int(labels.shape[0]),
        "detection_rate": None,
        "false_alarm_rate": None,
        "f1": None,
    }
    if is_attack.all() or not is_attack.any():
        present = "attack" if is_attack.any() else "normal"
        point["rule"] = RULE_ARGMAX
        point["note"] = f"only {present} validation flows: no threshold chosen"
        return point
    if max_false_alarm_rate is not None and not 0.0 <= max_false_alarm_rate <= 1.0:
        raise ValueError(
            f"max_false_alarm_rate: expected a share in [0, 1], "
            f"found {max_false_alarm_rate}"
        )

    if max_false_alarm_rate is None:
        precision, recall, thresholds = skm.precision_recall_curve(is_attack, score)
        precision, recall = precision[:-1], recall[:-1]  # the last point has none
        denominator = np.where(precision + recall > 0, precision + recall, 1.0)
        f1 = 2.0 * precision * recall / denominator
        threshold = float(thresholds[int(np.argmax(f1))])
    else:
        false_alarm, detection, thresholds = skm.roc_curve(
            is_attack, score, drop_intermediate=False
        )
        allowed = np.flatnonzero(false_alarm <= max_false_alarm_rate)
        best = allowed[np.argmax(detection[allowed])]  # first max: highest threshold
        threshold = float(thresholds[best])
        if not np.isfinite(threshold):  # flag nothing: just above the top score
            threshold = float(np.nextafter(score.max(), np.inf))

    flagged = score >= threshold
    point["threshold"] = threshold
    point["detection_rate"] = float(skm.recall_score(is_attack, flagged))
    point["false_alarm_rate"] = float(flagged[~is_attack].mean())
    point["f1"] = float(skm.f1_score(is_attack, flagged, zero_division=0))
    return point


@dataclasses.dataclass
class EvalAccumulator:
    """Gathers eval batches on the host; padding rows (mask False) are dropped.

    Call ``update`` once per eval batch with the batch's labels, the model's class
    probabilities and the batch ``mask``; optionally the per-flow loss. Afterwards
    ``labels``/``probs`` hold every real flow once, ``count`` is their number, and
    ``loss_sum / count`` is the mean loss (``mean_loss``).
    """

    count: int = 0
    loss_sum: float = 0.0
    _labels: list = dataclasses.field(default_factory=list)
    _probs: list = dataclasses.field(default_factory=list)

    def update(
        self,
        labels: np.ndarray,
        probs: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        losses: np.ndarray | None = None,
    ) -> None:
        """Adds one batch: labels (b,), probs (b, C), mask bool (b,), losses (b,)."""
        labels = np.asarray(labels)
        probs = np.asarray(probs, dtype=np.float32)
        keep = (
            np.ones(labels.shape[0], dtype=bool)
            if mask is None
            else np.asarray(mask, dtype=bool)
        )
        if keep.shape != labels.shape or probs.shape[0] != labels.shape[0]:
            raise ValueError(
                f"batch shapes disagree: labels {labels.shape}, probs {probs.shape}, "
                f"mask {keep.shape}"
            )
        self._labels.append(labels[keep].astype(np.int64))
        self._probs.append(probs[keep])
        self.count += int(keep.sum())
        if losses is not None:
            self.loss_sum += float(np.asarray(losses, dtype=np.float64)[keep].sum())

    @property
    def labels(self) -> np.ndarray:
        """True class per gathered flow, int64 (count,)."""
        if not self._labels:
            return np.zeros((0,), dtype=np.int64)
        return np.concatenate(self._labels)

    @property
    def probs(self) -> np.ndarray:
        """Class probabilities per gathered flow, float32 (count, C)."""
        if not self._probs:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(self._probs)

    @property
    def mean_loss(self) -> float | None:
        """Mean per-flow loss over the gathered flows (None before any flow)."""
        return None if self.count == 0 else self.loss_sum / self.count

    def metrics(self, class_names: Sequence[str], **kwargs) -> dict:
        """``classification_metrics`` of the gathered flows (same keyword args)."""
        return classification_metrics(self.labels, self.probs, class_names, **kwargs)
