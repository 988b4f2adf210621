"""Flow cutting options: the ``flows`` config section, checked and made concrete.

Masking defaults: IP addresses and ports are masked (zeroed in the sample tensor, never
in the flow metadata) because a model that sees the hosts and services of one trace
learns to recognise those hosts, and that knowledge does not carry over to another
network or another day; the other masks are off by default and exist to test which
header fields a trained model leans on. ``mask_ip_checksum_id`` also zeroes the
TCP, UDP and ICMPv6 checksums, which cover the addresses through the pseudo-header
(with addresses masked, they would still tell hosts apart).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# Bits of the masking bitmask handed to the compiled kernel.
MASK_ADDRESSES = 1
MASK_PORTS = 2
MASK_IP_CHECKSUM_ID = 4
MASK_TTL = 8
MASK_TCP_SEQ_ACK = 16
MASK_TCP_TIMESTAMPS = 32
MASK_IPV6_FLOW_LABEL = 64

_MASK_FLAGS = {
    "mask_addresses": MASK_ADDRESSES,
    "mask_ports": MASK_PORTS,
    "mask_ip_checksum_id": MASK_IP_CHECKSUM_ID,
    "mask_ttl": MASK_TTL,
    "mask_tcp_seq_ack": MASK_TCP_SEQ_ACK,
    "mask_tcp_timestamps": MASK_TCP_TIMESTAMPS,
    "mask_ipv6_flow_label": MASK_IPV6_FLOW_LABEL,
}

# After both FINs of a TCP flow, the closing ACK that follows within this many seconds
# still belongs to the flow (instead of opening a one-packet flow of its own).
CLOSE_WAIT_S = 2.0

# A non-first IP fragment joins the flow of its datagram's first fragment only when
# the first fragment was seen at most this many seconds earlier (the Linux default
# reassembly timeout).
FRAGMENT_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """Concrete, validated flow cutting options.

    Attributes:
      packets_per_flow: packets kept in each flow's sample tensor (P).
      bytes_per_packet: bytes kept of each packet from the IP header on (B).
      idle_timeout_s: a gap longer than this (seconds) between two packets of a flow
        ends the flow.
      active_timeout_s: a flow that has lasted longer than this (seconds) is ended
        and the next packet starts a new flow.
      vlan_in_key: whether the outermost VLAN id is part of the flow key.
      mask_*: see the module docstring; each zeroes header fields in the tensor.
    """

    packets_per_flow: int = 8
    bytes_per_packet: int = 100
    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0
    mask_addresses: bool = True
    mask_ports: bool = True
    mask_ip_checksum_id: bool = False
    mask_ttl: bool = False
    mask_tcp_seq_ack: bool = False
    mask_tcp_timestamps: bool = False
    mask_ipv6_flow_label: bool = False
    vlan_in_key: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.packets_per_flow <= 4096:
            raise ValueError(
                "flows.packets_per_flow must be in 1..4096, "
                f"got {self.packets_per_flow}"
            )
        if not 1 <= self.bytes_per_packet <= 65535:
            raise ValueError(
                "flows.bytes_per_packet must be in 1..65535, "
                f"got {self.bytes_per_packet}"
            )
        if not self.idle_timeout_s > 0:
            raise ValueError(
                f"flows.idle_timeout_s must be > 0 s, got {self.idle_timeout_s}"
            )
        if not self.active_timeout_s > 0:
            raise ValueError(
                f"flows.active_timeout_s must be > 0 s, got {self.active_timeout_s}"
            )

    @classmethod
    def from_config(cls, flows_config: Any) -> FlowOptions:
        """Options from a ``flows`` config section (ConfigDict, dict or FlowOptions).

        Keys absent from the section take the defaults; unknown keys are an error,
        so that a misspelt option is never silently ignored.
        """
        if isinstance(flows_config, FlowOptions):
            return flows_config
        values = config_to_dict(flows_config)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown flows config keys {unknown}; known keys: {sorted(known)}"
            )
        return cls(
            packets_per_flow=int(values.get("packets_per_flow", 8)),
            bytes_per_packet=int(values.get("bytes_per_packet", 100)),
            idle_timeout_s=float(values.get("idle_timeout_s", 120.0)),
            active_timeout_s=float(values.get("active_timeout_s", 1800.0)),
            **{
                name: bool(values.get(name, getattr(cls, name)))
                for name in (*_MASK_FLAGS, "vlan_in_key")
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain JSON-ready dict (the exact config of a store)."""
        return dataclasses.asdict(self)

    @property
    def mask_bits(self) -> int:
        """The masking options as a bitmask of the ``MASK_*`` constants."""
        return sum(bit for name, bit in _MASK_FLAGS.items() if getattr(self, name))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain dict from a ConfigDict, a mapping or a dataclass."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if hasattr(config, "to_dict"):
        return dict(config.to_dict())
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(
        f"expected a flows config (ConfigDict or mapping), got {type(config).__name__}"
    )
