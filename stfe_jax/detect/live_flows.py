"""Flow assembly for a live interface: a flow table that also reports flows early.

Offline, a flow is scored when it ends. Live, an operator wants the alert while the
flow is still going, so a flow is also handed out as soon as its sample holds
``packets_per_flow`` packets (later packets cannot change the sample), and flows
are timed out by the wall clock when no packet arrives to move capture time on.

TODO: this reads the open-flow state of ``stfe_jax.flows.FlowTable`` (its slot
arrays and the kernel's sweep), because the flow table has no public call for
"flows whose sample just filled" or "expire at this time"; once it has them
(``FlowTable.take_full_samples()`` and ``FlowTable.expire(now_ns)``), use those.
"""

from __future__ import annotations

import numpy as np

from stfe_jax.flows import FlowBatch, FlowTable, kernel


def flow_identities(flows: FlowBatch, rows=None) -> list[tuple]:
    """Hashable identity of each flow: first packet time and 5-tuple."""
    rows = range(len(flows)) if rows is None else rows
    return [
        (
            int(flows.start_ns[i]),
            bytes(flows.src_addr[i]),
            bytes(flows.dst_addr[i]),
            int(flows.src_port[i]),
            int(flows.dst_port[i]),
            int(flows.protocol[i]),
        )
        for i in rows
    ]


class LiveFlowTable(FlowTable):
    """A ``FlowTable`` that hands out flows whose sample filled, and expires flows
    by the wall clock.

    Flows handed out early by ``take_full_samples`` are remembered; when they end,
    ``drop_already_scored`` removes them from the ended flows, so each flow is
    scored once.
    """

    def __init__(self, flows_config, *, capture_index: int = 0):
        super().__init__(flows_config, capture_index=capture_index)
        self._scored_start = np.full(0, np.iinfo(np.int64).min, dtype=np.int64)
        self._scored: set[tuple] = set()

    def take_full_samples(self) -> FlowBatch | None:
        """Open flows whose sample reached ``packets_per_flow`` packets since the
        last call (copies; the flows stay open and keep counting packets)."""
        capacity = self._s_i64.shape[0]
        if self._scored_start.size < capacity:
            grown = np.full(capacity, np.iinfo(np.int64).min, dtype=np.int64)
            grown[: self._scored_start.size] = self._scored_start
            self._scored_start = grown
        start = self._s_i64[:, kernel.S_START]
        full = (
            (self._s_u8[:, kernel.U_LIVE] == 1)
            & (self._s_u8[:, kernel.U_REASON] == 0)
            & (self._s_i64[:, kernel.S_NSAMPLE] >= self.options.packets_per_flow)
            & (self._scored_start[:capacity] != start)
        )
        slots = np.flatnonzero(full)
        if slots.size == 0:
            return None
        self._scored_start[slots] = start[slots]
        flows = self._gather(slots)
        self._scored.update(flow_identities(flows))
        return flows

    def drop_already_scored(self, flows: FlowBatch | None) -> FlowBatch | None:
        """``flows`` without those already handed out by ``take_full_samples``."""
        if flows is None or not self._scored:
            return flows
        identities = flow_identities(flows)
        keep = np.array([identity not in self._scored for identity in identities])
        self._scored.difference_update(identities)
        if keep.all():
            return flows
        if not keep.any():
            return None
        return FlowBatch(**{name: value[keep] for name, value in vars(flows).items()})

    def expire(self, now_ns: int) -> FlowBatch | None:
        """Ends the flows idle (or active) past their timeout at ``now_ns`` (ns
        since the epoch, the wall clock); returns them."""
        self._ended = np.zeros(self._s_i64.shape[0] + 1, dtype=np.int64)
        kernel.expire_flows(
            int(now_ns),
            self._table,
            self._s_i64,
            self._s_u8,
            self._params,
            self._counters,
            self._ended,
        )
        return self._take_ended()
