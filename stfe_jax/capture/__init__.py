"""Capture reading: pcap/pcapng files (optionally gzip) -> per-packet columns."""

from stfe_jax.capture.columns import PacketBatch
from stfe_jax.capture.errors import CaptureFormatError
from stfe_jax.capture.reader import Capture, open_capture

__all__ = ["Capture", "CaptureFormatError", "PacketBatch", "open_capture"]
