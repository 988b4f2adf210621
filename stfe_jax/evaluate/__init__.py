"""Evaluation: metrics of flow predictions, reports, plots, feature probes, baselines.

``metrics`` computes the figures with scikit-learn; ``report`` writes
``report.md``/``report.json`` and the comparison across models; ``plots`` draws
the PNG figures; ``probes`` trains classical classifiers on learned features;
``flow_statistics`` is the hand-made flow-statistics baseline.
"""

from stfe_jax.evaluate.metrics import (
    EvalAccumulator,
    anomaly_score,
    choose_threshold,
    classification_metrics,
    predict_classes,
)

__all__ = [
    "EvalAccumulator",
    "anomaly_score",
    "choose_threshold",
    "classification_metrics",
    "predict_classes",
]
