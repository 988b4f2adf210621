"""Capture reading: pcap/pcapng files or streams (optionally gzip) -> per-packet
columns (``PacketBatch``). Start with ``open_capture``; ``summarize_capture``
counts what was decoded (``python -m stfe_jax.capture FILE...`` prints it)."""

from stfe_jax.capture.columns import PacketBatch
from stfe_jax.capture.errors import CaptureFormatError
from stfe_jax.capture.reader import Capture, open_capture
from stfe_jax.capture.summary import summarize_capture

__all__ = [
    "Capture",
    "CaptureFormatError",
    "PacketBatch",
    "open_capture",
    "summarize_capture",
]
