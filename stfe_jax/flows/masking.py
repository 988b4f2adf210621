"""Masking of header fields in a packet's sample bytes, for callers outside the
flow cutter (e.g. showing the bytes a model saw of one packet).

The compiled function itself lives in ``stfe_jax.flows.kernel`` beside its caller,
so that numba's on-disk cache sees every change to it; see ``mask_packet_row``
there for the fields and offsets.
"""

from stfe_jax.flows.kernel import has_ports, mask_packet_row

__all__ = ["has_ports", "mask_packet_row"]
