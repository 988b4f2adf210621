"""Packet columns to flows and their sample tensors (masking lives here)."""

from stfe_jax.flows.columns import FLOW_COLUMNS, SAMPLE_COLUMNS, FlowBatch
from stfe_jax.flows.cutter import FlowStats, FlowStream, FlowTable, cut_flows
from stfe_jax.flows.options import FlowOptions

__all__ = [
    "FLOW_COLUMNS",
    "SAMPLE_COLUMNS",
    "FlowBatch",
    "FlowOptions",
    "FlowStats",
    "FlowStream",
    "FlowTable",
    "cut_flows",
]
