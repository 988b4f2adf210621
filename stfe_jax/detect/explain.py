"""Explaining alerts: Wireshark's dissection of a flagged flow's first packets.

For each alert, pyshark runs tshark on the source capture with a display filter for
the flow's 5-tuple and time span, and the first packets are printed as Wireshark's
packet details pane shows them (one line per protocol, its fields indented below,
with Wireshark's own field names from ``tshark -G fields``), followed by the bytes
the model saw: the packet from its IP header on, ``bytes_per_packet`` bytes.

TODO: tshark reads the whole capture to apply the display filter (17-30 k
packets/s); on a large capture, cutting the flow's time span out first with editcap
would make each explanation cost seconds instead of minutes.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterable
from typing import TextIO

import numpy as np
from absl import logging

from stfe_jax.detect import tools

MAX_FIELD_TEXT = 100
_INDENT = "    "
# Fields Wireshark keeps hidden in its details pane (filter aliases such as
# ip.addr for "either address") and name-resolution echoes.
_HIDDEN_FIELDS = frozenset(
    f"{proto}.{field}"
    for proto, field_names in (
        ("ip", ("addr", "host", "src_host", "dst_host")),
        ("ipv6", ("addr", "host", "src_host", "dst_host")),
        ("tcp", ("port",)),
        ("udp", ("port",)),
        ("eth", ("addr", "lg", "ig")),
    )
    for field in field_names
)
_HIDDEN_SUFFIXES = ("_resolved", ".oui", ".addr.oui")


def _hidden(key: str) -> bool:
    return key in _HIDDEN_FIELDS or key.endswith(_HIDDEN_SUFFIXES)


def field_glossary(tshark: str) -> tuple[dict[str, str], dict[str, str]]:
    """(field abbreviation -> name, protocol abbreviation -> name) from tshark."""
    completed = subprocess.run(
        [tshark, "-G", "fields"], capture_output=True, text=True, check=True
    )
    fields, protocols = {}, {}
    for line in completed.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0] == "F":
            fields[parts[2]] = parts[1]
        elif len(parts) >= 3 and parts[0] == "P":
            protocols[parts[2]] = parts[1]
    return fields, protocols


def flow_display_filter(alert: dict) -> str:
    """A Wireshark display filter matching the alert's flow (both directions)."""
    ip = "ip" if alert.get("ip_version", 4) == 4 else "ipv6"
    terms = [f"{ip}.addr == {alert['src_addr']}", f"{ip}.addr == {alert['dst_addr']}"]
    name = alert.get("protocol_name")
    if name in ("tcp", "udp", "sctp", "dccp"):
        terms += [
            f"{name}.port == {alert['src_port']}",
            f"{name}.port == {alert['dst_port']}",
        ]
    elif ip == "ip":
        terms.append(f"ip.proto == {alert['protocol']}")
    else:
        terms.append(f"ipv6.nxt == {alert['protocol']}")
    start_s = alert["first_packet_ns"] / 1e9 - 1e-6
    end_s = alert["last_packet_ns"] / 1e9 + 1e-6
    terms.append(f"frame.time_epoch >= {start_s:.6f}")
    terms.append(f"frame.time_epoch <= {end_s:.6f}")
    return " && ".join(terms)


def _value_text(value) -> str:
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= MAX_FIELD_TEXT else text[: MAX_FIELD_TEXT - 3] + "..."


def _field_lines(fields: dict, names: dict, depth: int) -> Iterable[str]:
    """Packet-details lines of a layer's JSON fields, subtrees indented."""
    for key, value in fields.items():
        if key.endswith("_raw") or _hidden(key):
            continue
        if key == "_ws.expert" and isinstance(value, dict):
            message = value.get("_ws.expert.message")
            yield f"{_INDENT * depth}[Expert Info: {message}]"
            continue
        if key.endswith("_tree") and isinstance(value, dict):
            continue  # printed under the field it belongs to
        if isinstance(value, dict):
            yield f"{_INDENT * depth}{names.get(key, key)}"
            yield from _field_lines(value, names, depth + 1)
            continue
        yield f"{_INDENT * depth}{names.get(key, key)}: {_value_text(value)}"
        subtree = fields.get(f"{key}_tree")
        if isinstance(subtree, dict):
            yield from _field_lines(subtree, names, depth + 1)


def _layer_title(layer, protocols: dict) -> str:
    name = layer.layer_name
    title = protocols.get(name, name.upper())
    fields = layer._all_fields
    if name in ("ip", "ipv6"):
        src, dst = fields.get(name + ".src"), fields.get(name + ".dst")
        return f"{title}, Src: {src}, Dst: {dst}"
    if name in ("tcp", "udp"):
        title += (
            f", Src Port: {fields.get(name + '.srcport')}, "
            f"Dst Port: {fields.get(name + '.dstport')}"
        )
        if name == "tcp":
            title += (
                f", Seq: {fields.get('tcp.seq')}, Ack: {fields.get('tcp.ack')}, "
                f"Len: {fields.get('tcp.len')}"
            )
        return title
    if name == "eth":
        return f"{title}, Src: {fields.get('eth.src')}, Dst: {fields.get('eth.dst')}"
    return title


def hex_dump(data: bytes, indent: str = _INDENT) -> list[str]:
    """Wireshark's bytes pane: offset, 16 bytes in hex, the printable ones as text."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{indent}{offset:04x}  {hex_part:<47}  {text}")
    return lines


def _first_offset(layer) -> int | None:
    """Byte offset of a layer in the frame, from its first raw field."""
    for key, value in layer._all_fields.items():
        if key.endswith("_raw") and isinstance(value, list) and len(value) > 1:
            if isinstance(value[1], int):
                return value[1]
    return None


def model_view(
    raw: bytes,
    ip_offset: int,
    l4_offset: int | None,
    ip_version: int,
    protocol: int,
    flows_config: dict,
) -> bytes:
    """The packet's bytes as the model's sample holds them: from the IP header on,
    ``bytes_per_packet`` bytes, header fields masked as the flows config says."""
    from stfe_jax.flows.masking import mask_packet_row
    from stfe_jax.flows.options import FlowOptions

    options = FlowOptions.from_config(flows_config)
    row = np.zeros(options.bytes_per_packet, dtype=np.uint8)
    kept_bytes = raw[ip_offset : ip_offset + options.bytes_per_packet]
    row[: len(kept_bytes)] = np.frombuffer(kept_bytes, dtype=np.uint8)
    l4_rel = -1 if l4_offset is None else l4_offset - ip_offset
    mask_packet_row(
        row, len(kept_bytes), ip_version, protocol, l4_rel, options.mask_bits
    )
    return row[: len(kept_bytes)].tobytes()


def packet_details(packet, names: dict, protocols: dict, flows_config: dict) -> str:
    """One pyshark packet (use_json, include_raw) as Wireshark's details pane,
    then the bytes the model saw of it."""
    frame = packet.frame_info._all_fields
    lines = [
        f"Frame {frame.get('frame.number')}: {frame.get('frame.len')} bytes on wire, "
        f"{frame.get('frame.cap_len')} bytes captured, {frame.get('frame.time')}"
    ]
    ip_offset = l4_offset = None
    ip_version = protocol = 0
    for layer in packet.layers:
        name = layer.layer_name
        if name.endswith("_raw") or name == "frame":
            continue
        lines.append(_layer_title(layer, protocols))
        lines.extend(_field_lines(layer._all_fields, names, 1))
        if ip_offset is None and name in ("ip", "ipv6"):
            ip_offset = _first_offset(layer)
            ip_version = 4 if name == "ip" else 6
            proto_field = "ip.proto" if name == "ip" else "ipv6.nxt"
            protocol = int(layer._all_fields.get(proto_field, 0))
        elif ip_offset is not None and l4_offset is None:
            l4_offset = _first_offset(layer)
    if ip_offset is not None:
        seen = model_view(
            packet.get_raw_packet(),
            ip_offset,
            l4_offset,
            ip_version,
            protocol,
            flows_config,
        )
        lines.append(
            f"Bytes the model saw ({len(seen)} from the IP header on, masked as "
            "in training):"
        )
        lines.extend(hex_dump(seen))
    return "\n".join(lines)


def _ensure_event_loop() -> None:
    """pyshark needs a current asyncio event loop in this thread."""
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def dissect_flow(
    capture: str,
    alert: dict,
    *,
    max_packets: int,
    flows_config: dict,
    names: dict,
    protocols: dict,
    tshark: str,
) -> list[str]:
    """Details-pane text of the first ``max_packets`` packets of the alert's flow."""
    import pyshark

    _ensure_event_loop()
    display_filter = flow_display_filter(alert)
    texts = []
    capture_reader = pyshark.FileCapture(
        capture,
        display_filter=display_filter,
        use_json=True,
        include_raw=True,
        keep_packets=False,
        tshark_path=tshark,
    )
    try:
        for packet in capture_reader:
            texts.append(packet_details(packet, names, protocols, flows_config))
            if len(texts) >= max_packets:
                break
    finally:
        capture_reader.close()
    return texts


def explain_alerts(
    alerts: list[dict],
    flows_config: dict,
    *,
    out: TextIO,
    capture_override: str | None = None,
) -> int:
    """Prints the dissection of each alert's first packets to ``out``.

    Args:
      alerts: alert records, highest score first.
      flows_config: the flows config (``packets_per_flow`` packets are shown,
        ``bytes_per_packet`` bytes of each as the model saw them).
      out: where to print.
      capture_override: read every flow from this capture (the saved live
        capture) instead of each alert's ``capture``.

    Returns:
      The number of packets printed.

    Raises:
      ToolMissingError: tshark is not installed (says how to install it).
    """
    tshark = tools.require_tool("tshark", "--explain (Wireshark dissection of alerts)")
    names, protocols = field_glossary(tshark)
    max_packets = int(flows_config["packets_per_flow"])
    printed = 0
    for rank, alert in enumerate(alerts, start=1):
        capture = capture_override or alert["capture"]
        print(
            f"\n=== Alert {rank}: score {alert['anomaly_score']:.4f} "
            f"({alert['predicted_class']}) {alert['protocol_name']} "
            f"{alert['src_addr']}:{alert['src_port']} -> "
            f"{alert['dst_addr']}:{alert['dst_port']}, {alert['packets']} packets, "
            f"{alert['first_packet_time']} ===",
            file=out,
        )
        print(f"capture {capture}; filter: {flow_display_filter(alert)}", file=out)
        texts = dissect_flow(
            capture,
            alert,
            max_packets=max_packets,
            flows_config=flows_config,
            names=names,
            protocols=protocols,
            tshark=tshark,
        )
        if not texts:
            print("(tshark found no packet of this flow)", file=out)
            logging.warning("no packet of alert %d found in %s", rank, capture)
        for text in texts:
            print(text, file=out)
            print(file=out)
        printed += len(texts)
    return printed
