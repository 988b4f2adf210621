"""Packet batches built in code for the flow and store tests, and checks of them.

``packet_batch`` decodes Ethernet frames made with ``stfe_jax.synth.packets`` into a
``PacketBatch`` with a small pure-Python decoder, so the flow tests depend on the
packet columns contract only, not on the capture reader.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np

from stfe_jax.capture.columns import IPV4_MAPPED_PREFIX, PacketBatch
from stfe_jax.synth import packets as pk

_IPV6_EXTENSIONS = (0, 43, 60, 51, 44)
_PORT_PROTOCOLS = (6, 17, 33, 132)


def decode_frame(frame: bytes) -> dict:
    """Header fields of one Ethernet frame, as the packet columns define them."""
    out = {
        "vlan_id": 0,
        "net_offset": -1,
        "ip_version": 0,
        "src_addr": np.zeros(16, np.uint8),
        "dst_addr": np.zeros(16, np.uint8),
        "protocol": 0,
        "l4_offset": -1,
        "src_port": 0,
        "dst_port": 0,
        "tcp_flags": 0,
        "ip_id": 0,
        "frag_offset": 0,
        "more_fragments": False,
        "is_fragment": False,
    }
    pos = 12
    (ethertype,) = struct.unpack_from("!H", frame, pos)
    while ethertype in (pk.ETHERTYPE_VLAN, pk.ETHERTYPE_QINQ):
        (tci,) = struct.unpack_from("!H", frame, pos + 2)
        if out["vlan_id"] == 0:
            out["vlan_id"] = tci & 0x0FFF
        pos += 4
        (ethertype,) = struct.unpack_from("!H", frame, pos)
    net = pos + 2
    l4 = -1
    if ethertype == pk.ETHERTYPE_IPV4:
        ihl = (frame[net] & 0x0F) * 4
        ident, flags_frag = struct.unpack_from("!HH", frame, net + 4)
        offset = (flags_frag & 0x1FFF) * 8
        more = bool(flags_frag & 0x2000)
        out.update(
            ip_version=4,
            protocol=frame[net + 9],
            ip_id=ident,
            frag_offset=offset,
            more_fragments=more,
            is_fragment=more or offset > 0,
        )
        out["src_addr"] = np.frombuffer(
            IPV4_MAPPED_PREFIX.tobytes() + frame[net + 12 : net + 16], np.uint8
        ).copy()
        out["dst_addr"] = np.frombuffer(
            IPV4_MAPPED_PREFIX.tobytes() + frame[net + 16 : net + 20], np.uint8
        ).copy()
        if offset == 0:
            l4 = net + ihl
    elif ethertype == pk.ETHERTYPE_IPV6:
        out["ip_version"] = 6
        out["src_addr"] = np.frombuffer(frame[net + 8 : net + 24], np.uint8).copy()
        out["dst_addr"] = np.frombuffer(frame[net + 24 : net + 40], np.uint8).copy()
        next_header = frame[net + 6]
        pos = net + 40
        l4 = pos
        while next_header in _IPV6_EXTENSIONS:
            if next_header == 44:
                offset_flags, ident = struct.unpack_from("!HI", frame, pos + 2)
                out.update(
                    ip_id=ident,
                    frag_offset=offset_flags & 0xFFF8,
                    more_fragments=bool(offset_flags & 1),
                    is_fragment=True,
                )
                length = 8
            elif next_header == 51:
                length = (frame[pos + 1] + 2) * 4
            else:
                length = (frame[pos + 1] + 1) * 8
            next_header = frame[pos]
            pos += length
            l4 = pos
        out["protocol"] = next_header
        if out["frag_offset"] > 0:
            l4 = -1
    else:
        return out
    out["net_offset"] = net
    out["l4_offset"] = l4
    if l4 >= 0 and out["protocol"] in _PORT_PROTOCOLS and l4 + 4 <= len(frame):
        out["src_port"], out["dst_port"] = struct.unpack_from("!HH", frame, l4)
        if out["protocol"] == pk.IPPROTO_TCP and l4 + 14 <= len(frame):
            out["tcp_flags"] = frame[l4 + 13]
    return out


def packet_batch(records: list[tuple[int, bytes]]) -> PacketBatch:
    """A PacketBatch of ``(ts_ns, frame)`` records (Ethernet frames, capture order)."""
    batch = PacketBatch.empty(len(records))
    offsets = np.cumsum([0] + [len(frame) for _, frame in records])
    batch.data = np.frombuffer(b"".join(frame for _, frame in records), np.uint8)
    batch.data = batch.data.copy()
    for i, (ts_ns, frame) in enumerate(records):
        fields = decode_frame(frame)
        batch.ts_ns[i] = ts_ns
        batch.caplen[i] = len(frame)
        batch.wirelen[i] = len(frame)
        batch.link_type[i] = 1
        batch.data_start[i] = offsets[i]
        batch.record_offset[i] = 24 + offsets[i] + 16 * i
        for name, value in fields.items():
            getattr(batch, name)[i] = value
    return batch


def ip_frame(
    src: str,
    dst: str,
    transport: bytes,
    protocol: int,
    *,
    vlan_ids: tuple[int, ...] = (),
    **ip_fields,
) -> bytes:
    """An Ethernet frame holding an IPv4 or IPv6 packet (by the address family)."""
    if ipaddress.ip_address(src).version == 4:
        packet = pk.ipv4(transport, src=src, dst=dst, protocol=protocol, **ip_fields)
        ethertype = pk.ETHERTYPE_IPV4
    else:
        packet = pk.ipv6(transport, src=src, dst=dst, next_header=protocol, **ip_fields)
        ethertype = pk.ETHERTYPE_IPV6
    return pk.ethernet(packet, ethertype=ethertype, vlan_ids=vlan_ids)


def tcp_frame(
    src: str,
    dst: str,
    src_port: int,
    dst_port: int,
    flags: str,
    *,
    payload: bytes = b"",
    vlan_ids: tuple[int, ...] = (),
    options: bytes = b"",
    seq: int = 0,
    ack: int = 0,
    **ip_fields,
) -> bytes:
    """An Ethernet frame with one TCP segment."""
    segment = pk.tcp(
        src_port=src_port,
        dst_port=dst_port,
        flags=flags,
        payload=payload,
        options=options,
        seq=seq,
        ack=ack,
        src_ip=src,
        dst_ip=dst,
    )
    return ip_frame(src, dst, segment, pk.IPPROTO_TCP, vlan_ids=vlan_ids, **ip_fields)


def udp_frame(
    src: str, dst: str, src_port: int, dst_port: int, payload: bytes = b"", **kw
) -> bytes:
    """An Ethernet frame with one UDP datagram."""
    datagram = pk.udp(
        src_port=src_port, dst_port=dst_port, payload=payload, src_ip=src, dst_ip=dst
    )
    return ip_frame(src, dst, datagram, pk.IPPROTO_UDP, **kw)


def tcp_session(
    client: str,
    server: str,
    client_port: int,
    server_port: int,
    t0_ns: int,
    *,
    step_ns: int = 1_000_000,
    close: str = "fin",
) -> list[tuple[int, bytes]]:
    """A TCP handshake, one request and reply, and a FIN (or RST) close."""
    c, s = (
        (client, server, client_port, server_port),
        (
            server,
            client,
            server_port,
            client_port,
        ),
    )
    steps = [
        (c, "S", b""),
        (s, "SA", b""),
        (c, "A", b""),
        (c, "PA", b"GET / HTTP/1.0\r\n\r\n"),
        (s, "PA", b"HTTP/1.0 200 OK\r\n\r\n"),
    ]
    if close == "fin":
        steps += [(c, "FA", b""), (s, "FA", b""), (c, "A", b"")]
    else:
        steps += [(c, "R", b"")]
    return [
        (t0_ns + k * step_ns, tcp_frame(*ends, flags, payload=payload))
        for k, (ends, flags, payload) in enumerate(steps)
    ]


def test_decode_frame_reads_tcp_over_vlan_ipv4():
    frame = tcp_frame("10.0.0.1", "10.0.0.2", 1234, 80, "S", vlan_ids=(7,))
    fields = decode_frame(frame)
    assert fields["vlan_id"] == 7
    assert fields["net_offset"] == 18
    assert fields["l4_offset"] == 38
    assert (fields["src_port"], fields["dst_port"]) == (1234, 80)
    assert fields["tcp_flags"] == pk.TCP_SYN
    assert bytes(fields["src_addr"][12:]) == bytes([10, 0, 0, 1])


def test_decode_frame_walks_ipv6_extension_headers():
    frag = pk.ipv6_fragment_header(frag_offset_bytes=0, more_fragments=True, ident=9)
    frame = ip_frame(
        "2001:db8::1",
        "2001:db8::2",
        pk.udp(src_port=53, dst_port=5353, payload=b"x" * 16),
        pk.IPPROTO_UDP,
        extension_headers=[(0, b""), frag],
    )
    fields = decode_frame(frame)
    assert fields["l4_offset"] == 14 + 40 + 8 + 8
    assert fields["protocol"] == pk.IPPROTO_UDP
    assert fields["is_fragment"] and fields["ip_id"] == 9
    assert (fields["src_port"], fields["dst_port"]) == (53, 5353)
