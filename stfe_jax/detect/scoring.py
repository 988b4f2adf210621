"""Scoring flows with a trained model: jit-compiled, in padded fixed-size batches.

Batch sizes run from ``min_batch`` up to ``max_batch`` in steps of ``growth``
(8, 64, 512, ...), so a stream of flow batches of any length compiles the model a
handful of times at most (a live detector scores a few flows at a time and warms
every size up before the capture starts; an offline one scores full batches).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from stfe_jax.flows.columns import FlowBatch

MODEL_INPUTS = ("packets", "packet_caplen", "direction", "iat_s", "n_packets")


class FlowScorer:
    """Class probabilities and anomaly scores of flows.

    Attributes:
      compiled_sizes: the padded batch sizes compiled so far.
      flows_scored: flows scored so far (padding not counted).
      seconds: wall time spent scoring (host to device, model, device to host).
    """

    def __init__(
        self,
        model,
        params,
        normal_class: int,
        max_batch: int = 1024,
        min_batch: int = 8,
        growth: int = 8,
    ):
        if max_batch < 1 or min_batch < 1:
            raise ValueError(
                f"batch sizes must be positive, got {min_batch}, {max_batch}"
            )
        self.normal_class = int(normal_class)
        self.max_batch = int(max_batch)
        self.min_batch = min(int(min_batch), self.max_batch)
        self.growth = max(int(growth), 2)
        self.params = jax.device_put(params)
        self.compiled_sizes: set[int] = set()
        self.flows_scored = 0
        self.seconds = 0.0

        def probabilities(params, batch):
            logits = model.apply({"params": params}, batch)
            return jax.nn.softmax(logits, axis=-1)

        self._probabilities = jax.jit(probabilities)

    def _padded_size(self, n: int) -> int:
        size = self.min_batch
        while size < n and size < self.max_batch:
            size *= self.growth
        return min(size, self.max_batch)

    @property
    def batch_sizes(self) -> list[int]:
        """Every padded batch size this scorer can compile."""
        sizes, size = [], self.min_batch
        while size < self.max_batch:
            sizes.append(size)
            size *= self.growth
        return [*sizes, self.max_batch]

    def warm_up(self, example: dict) -> float:
        """Compiles every batch size on zero inputs shaped like ``example`` (a
        model input dict of one or more flows); returns the seconds it took."""
        started = time.perf_counter()
        columns = {
            name: np.zeros(
                (1, *np.shape(example[name])[1:]), np.asarray(example[name]).dtype
            )
            for name in MODEL_INPUTS
        }
        for size in self.batch_sizes:
            if size not in self.compiled_sizes:
                padded = {k: np.repeat(v, size, axis=0) for k, v in columns.items()}
                self._score_chunk(padded, 0, size)
        return time.perf_counter() - started

    def _score_chunk(self, columns: dict, start: int, stop: int) -> np.ndarray:
        n = stop - start
        size = self._padded_size(n)
        batch = {}
        for name in MODEL_INPUTS:
            column = columns[name][start:stop]
            if n < size:
                pad = np.zeros((size - n, *column.shape[1:]), dtype=column.dtype)
                column = np.concatenate([column, pad])
            batch[name] = column
        self.compiled_sizes.add(size)
        return np.asarray(self._probabilities(self.params, batch))[:n]

    def probabilities(self, flows: FlowBatch | dict) -> np.ndarray:
        """(m, C) float32 class probabilities of the ``m`` flows.

        Args:
          flows: a ``FlowBatch`` or a dict with the model inputs ``packets``
            (m, P, B) uint8, ``packet_caplen``, ``direction``, ``iat_s`` (m, P)
            and ``n_packets`` (m,).
        """
        columns = {
            name: np.asarray(
                flows[name] if isinstance(flows, dict) else getattr(flows, name)
            )
            for name in MODEL_INPUTS
        }
        m = columns["n_packets"].shape[0]
        started = time.perf_counter()
        parts = [
            self._score_chunk(columns, start, min(start + self.max_batch, m))
            for start in range(0, m, self.max_batch)
        ]
        self.seconds += time.perf_counter() - started
        self.flows_scored += m
        if not parts:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(parts).astype(np.float32)

    def anomaly_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """(m,) float32: 1 - p(benign) of each flow."""
        return (1.0 - probabilities[:, self.normal_class]).astype(np.float32)
