"""Tests of stfe_jax.evaluate.metrics against hand counts and scikit-learn."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn import metrics as skm

from stfe_jax.evaluate import metrics

CLASS_NAMES = ["benign", "scan", "dos"]

# A fake model with fixed logits: six flows, three classes.
FIXED_LOGITS = np.array(
    [
        [4.0, 0.0, 0.0],  # benign, predicted benign
        [0.0, 3.0, 0.0],  # benign, predicted scan  (a false alarm)
        [0.0, 5.0, 1.0],  # scan, predicted scan
        [2.0, 1.0, 0.0],  # scan, predicted benign  (a missed attack)
        [0.0, 0.0, 2.0],  # dos, predicted dos
        [0.0, 3.0, 1.0],  # dos, predicted scan     (detected, wrong class)
    ]
)
FIXED_LABELS = np.array([0, 0, 1, 1, 2, 2])


def _random_predictions(n=300, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[labels]
    return labels, softmax(logits, axis=1).astype(np.float32)


def test_fixed_logits_hand_counts():
    probs = softmax(FIXED_LOGITS, axis=1)
    m = metrics.classification_metrics(FIXED_LABELS, probs, CLASS_NAMES)

    assert m["n_flows"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 1, 1]]
    # scan: predicted 3 times, right once; 2 true scan flows, 1 found.
    assert m["per_class"]["scan"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["scan"]["recall"] == pytest.approx(1 / 2)
    assert m["per_class"]["scan"]["f1"] == pytest.approx(0.4)
    assert m["per_class"]["dos"]["precision"] == pytest.approx(1.0)
    assert m["per_class"]["dos"]["recall"] == pytest.approx(0.5)
    # Attack vs normal: attacks 2,3,4,5 -> flagged 2,4,5 (3 of 4); benign 1 flagged.
    assert m["binary_counts"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 3}
    assert m["detection_rate"] == pytest.approx(3 / 4)
    assert m["false_alarm_rate"] == pytest.approx(1 / 2)
    assert m["threshold"] is None and m["decision_rule"] == "argmax"
    # Scores 1 - p(benign): benign 0.035, 0.955; attack 0.993, 0.335, 0.894,
    # 0.958. Of the 8 (attack, benign) pairs, 6 put the attack higher.
    assert m["roc_auc"] == pytest.approx(6 / 8)


def test_agrees_with_scikit_learn_on_fixed_predictions():
    labels, probs = _random_predictions()
    m = metrics.classification_metrics(labels, probs, CLASS_NAMES)
    predicted = probs.argmax(axis=1)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
    p, r, f, s = skm.precision_recall_fscore_support(labels, predicted)
    for i, name in enumerate(CLASS_NAMES):
        assert m["per_class"][name]["precision"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]
    assert m["macro"]["f1"] == pytest.approx(
        skm.f1_score(labels, predicted, average="macro")
    )
    is_attack = labels != 0
    score = 1.0 - probs[:, 0].astype(np.float64)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(is_attack, score))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(is_attack, score))
    assert m["detection_rate"] == pytest.approx(
        skm.recall_score(is_attack, predicted != 0)
    )
    assert m["false_alarm_rate"] == pytest.approx(np.mean(predicted[~is_attack] != 0))
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, probs), rel=1e-5)
    assert m["confusion_matrix"] == skm.confusion_matrix(labels, predicted).tolist()


def test_each_flow_counted_once_per_class():
    labels, probs = _random_predictions(n=257, seed=4)
    m = metrics.classification_metrics(labels, probs, CLASS_NAMES)
    confusion = np.array(m["confusion_matrix"])

    assert confusion.sum() == 257
    np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(labels))
    supports = [m["per_class"][n]["support"] for n in CLASS_NAMES]
    assert supports == np.bincount(labels).tolist()
    counts = m["binary_counts"]
    assert sum(counts.values()) == 257


def test_threshold_flags_by_anomaly_score_and_keeps_attack_class():
    probs = softmax(FIXED_LOGITS, axis=1)
    score = 1.0 - probs[:, 0]
    threshold = float(score[3])  # flow 3 (scan, argmax benign) becomes flagged
    m = metrics.classification_metrics(
        FIXED_LABELS, probs, CLASS_NAMES, threshold=threshold
    )

    predicted = metrics.predict_classes(probs, threshold=threshold)
    expected = np.where(score >= threshold, np.argmax(probs[:, 1:], axis=1) + 1, 0)
    np.testing.assert_array_equal(predicted, expected)
    assert predicted[3] == 1
    assert m["threshold"] == pytest.approx(threshold)
    assert m["detection_rate"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(FIXED_LABELS, predicted))


def test_auc_undefined_with_one_class_says_why():
    probs = softmax(FIXED_LOGITS[:2], axis=1)
    m = metrics.classification_metrics(np.array([0, 0]), probs, CLASS_NAMES)

    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert "only normal" in m["auc_note"]
    assert m["detection_rate"] is None
    assert m["false_alarm_rate"] == pytest.approx(0.5)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="not logits"):
        metrics.classification_metrics(FIXED_LABELS, FIXED_LOGITS, CLASS_NAMES)
    with pytest.raises(ValueError, match="found 3 at flow 1"):
        metrics.classification_metrics(
            np.array([0, 3]), np.full((2, 3), 1 / 3), CLASS_NAMES
        )
    with pytest.raises(ValueError, match="expected 3 columns"):
        metrics.classification_metrics(
            np.array([0, 1]), np.full((2, 2), 0.5), CLASS_NAMES
        )


def _binary_rates(is_attack, score, threshold):
    """Detection rate, false alarm rate and F1 of flagging score >= threshold,
    counted directly (an independent reference for the sklearn-based code)."""
    flagged = score >= threshold
    tp = np.sum(flagged & is_attack)
    fp = np.sum(flagged & ~is_attack)
    fn = np.sum(~flagged & is_attack)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return tp / is_attack.sum(), fp / (~is_attack).sum(), f1


def test_choose_threshold_max_f1_is_best_over_all_cut_points():
    labels, probs = _random_predictions(n=200, seed=1)
    point = metrics.choose_threshold(labels, probs)
    is_attack = labels != 0
    score = 1.0 - probs[:, 0].astype(np.float64)

    best_f1 = max(_binary_rates(is_attack, score, t)[2] for t in np.unique(score))
    assert point["rule"] == metrics.RULE_MAX_F1
    assert point["f1"] == pytest.approx(best_f1)
    assert _binary_rates(is_attack, score, point["threshold"])[2] == pytest.approx(
        best_f1
    )


@pytest.mark.parametrize("bound", [0.0, 0.05, 0.2])
def test_choose_threshold_under_false_alarm_bound(bound):
    labels, probs = _random_predictions(n=200, seed=2)
    point = metrics.choose_threshold(labels, probs, max_false_alarm_rate=bound)
    is_attack = labels != 0
    score = 1.0 - probs[:, 0].astype(np.float64)

    candidates = [_binary_rates(is_attack, score, t) for t in np.unique(score)]
    best_detection = max([dr for dr, far, _ in candidates if far <= bound] + [0.0])
    assert point["false_alarm_rate"] <= bound
    assert point["detection_rate"] == pytest.approx(best_detection)
    dr, far, _ = _binary_rates(is_attack, score, point["threshold"])
    assert dr == pytest.approx(point["detection_rate"])
    assert far == pytest.approx(point["false_alarm_rate"])


def test_choose_threshold_without_attacks_falls_back_to_argmax():
    probs = np.full((4, 2), 0.5)
    point = metrics.choose_threshold(np.zeros(4, dtype=int), probs)
    assert point["threshold"] is None and point["rule"] == metrics.RULE_ARGMAX
    assert "only normal" in point["note"]


def test_accumulator_drops_padding_and_counts_each_flow_once():
    labels, probs = _random_predictions(n=70, seed=3)
    losses = -np.log(probs[np.arange(70), labels])
    accumulator = metrics.EvalAccumulator()
    batch = 32
    for start in range(0, 70, batch):
        real = min(batch, 70 - start)
        pad = batch - real
        accumulator.update(
            np.pad(labels[start : start + real], (0, pad)),
            np.pad(probs[start : start + real], ((0, pad), (0, 0)), constant_values=1),
            mask=np.arange(batch) < real,
            losses=np.pad(losses[start : start + real], (0, pad), constant_values=99),
        )

    assert accumulator.count == 70
    np.testing.assert_array_equal(accumulator.labels, labels)
    assert accumulator.mean_loss == pytest.approx(losses.mean(), rel=1e-5)
    direct = metrics.classification_metrics(labels, probs, CLASS_NAMES)
    assert accumulator.metrics(CLASS_NAMES) == direct
