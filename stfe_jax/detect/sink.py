"""Where flows go once cut: scored, the alerts written, counted, the top kept.

Both the offline and the live detector hand every ``FlowBatch`` to one
``AlertSink``; it knows nothing of where the flows came from.
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np
from absl import logging

from stfe_jax.detect import alerts as alerts_lib
from stfe_jax.detect.checkpoint import Detector
from stfe_jax.detect.scoring import FlowScorer
from stfe_jax.flows.columns import FlowBatch


class AlertSink:
    """Scores flows, writes the alerts, and keeps the summary and the top alerts.

    Flows are scored in padded batches of ``min_batch`` to ``eval.batch_size``
    flows (default: always full batches, one compiled shape; a live detector
    passes a small ``min_batch`` so that a few flows are not padded to a full one).

    Attributes:
      summary: the ``DetectSummary`` so far.
      top: the ``keep_top`` highest-scoring alert records, highest first (see
        ``top_alerts``).
    """

    def __init__(
        self,
        detector: Detector,
        writer: alerts_lib.AlertWriter,
        *,
        scorer: FlowScorer | None = None,
        keep_top: int = 0,
        min_batch: int | None = None,
    ):
        self.detector = detector
        self.writer = writer
        self.scorer = scorer or FlowScorer(
            detector.model,
            detector.params,
            detector.normal_class,
            max_batch=int(detector.config.eval.get("batch_size", 1024)),
            min_batch=min_batch or int(detector.config.eval.get("batch_size", 1024)),
        )
        self.summary = alerts_lib.DetectSummary()
        self._keep_top = int(keep_top)
        self._top: list = []
        self._order = itertools.count()

    def add(self, flows: FlowBatch, capture: str, **extra) -> list[dict]:
        """Scores ``flows`` of ``capture``; writes and returns their alert records.

        ``extra`` fields (e.g. why a live flow was scored) go into every record.
        """
        if flows is None or len(flows) == 0:
            return []
        detector = self.detector
        probabilities = self.scorer.probabilities(flows)
        scores = self.scorer.anomaly_scores(probabilities)
        alert = alerts_lib.is_alert(
            probabilities, scores, detector.normal_class, detector.threshold
        )
        classes = alerts_lib.predicted_attack_class(
            probabilities, detector.normal_class
        )
        rows = np.flatnonzero(alert)
        records = alerts_lib.alert_records(
            flows, rows, scores, classes, detector.class_names, capture, **extra
        )
        self.writer.write(records)
        self.summary.add(capture, len(flows), [r["predicted_class"] for r in records])
        self.summary.scoring_seconds = self.scorer.seconds
        for record in records:
            self._remember(record)
        if records:
            logging.log_every_n_seconds(
                logging.INFO,
                "%d flows scored, %d alerts so far",
                10,
                self.summary.flows,
                self.summary.alerts,
            )
        return records

    def _remember(self, record: dict) -> None:
        if not self._keep_top:
            return
        item = (record["anomaly_score"], -next(self._order), record)
        if len(self._top) < self._keep_top:
            heapq.heappush(self._top, item)
        elif item[:2] > self._top[0][:2]:
            heapq.heapreplace(self._top, item)

    def top_alerts(self) -> list[dict]:
        """The kept highest-scoring alerts, highest score first (ties: first seen)."""
        return [
            item[2] for item in sorted(self._top, key=lambda t: t[:2], reverse=True)
        ]
