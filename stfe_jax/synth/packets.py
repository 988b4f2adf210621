"""Builders for the bytes of Ethernet frames and IPv4/IPv6/TCP/UDP/ICMP headers.

Each builder returns ``bytes`` and computes what a sender computes (lengths, header
checksums, pseudo-header checksums), so tests can build exact packets in a few lines:

    frame = ethernet(
        ipv4(tcp(src_port=1234, dst_port=80, flags="S", src_ip="10.0.0.1",
                 dst_ip="10.0.0.2"),
             src="10.0.0.1", dst="10.0.0.2", protocol=IPPROTO_TCP),
        ethertype=ETHERTYPE_IPV4,
    )

Addresses are strings ("10.0.0.1", "2001:db8::1", "02:00:00:00:00:01").
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100  # 802.1Q customer tag
ETHERTYPE_QINQ = 0x88A8  # 802.1ad service (outer) tag
ETHERTYPE_IPV6 = 0x86DD

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_GRE = 47
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80
_TCP_FLAG_LETTERS = {
    "F": TCP_FIN,
    "S": TCP_SYN,
    "R": TCP_RST,
    "P": TCP_PSH,
    "A": TCP_ACK,
    "U": TCP_URG,
    "E": TCP_ECE,
    "C": TCP_CWR,
}

ETHERNET_HEADER_LEN = 14
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
TCP_HEADER_LEN = 20
UDP_HEADER_LEN = 8
ICMP_HEADER_LEN = 8  # type, code, checksum and the 4-byte rest of header


def mac_bytes(mac: str) -> bytes:
    """The 6 bytes of a MAC address written as ``"02:00:5e:10:00:01"``."""
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"MAC address {mac!r}: expected 6 colon-separated bytes")
    return bytes(int(part, 16) for part in parts)


def ip_bytes(address: str) -> bytes:
    """The 4 (IPv4) or 16 (IPv6) bytes of an IP address string."""
    return ipaddress.ip_address(address).packed


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement checksum of ``data`` (odd length padded with zero).

    Re-summing a header that holds its correct checksum gives 0.
    """
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src_ip: str, dst_ip: str, protocol: int, length: int) -> bytes:
    """The IPv4 or IPv6 pseudo-header that TCP, UDP and ICMPv6 checksums cover."""
    src, dst = ip_bytes(src_ip), ip_bytes(dst_ip)
    if len(src) != len(dst):
        raise ValueError(f"addresses {src_ip!r} and {dst_ip!r} mix IPv4 and IPv6")
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, protocol, length)
    return src + dst + struct.pack("!IxxxB", length, protocol)


def _transport_checksum(
    segment: bytes, protocol: int, src_ip: str | None, dst_ip: str | None
) -> int:
    """Checksum of a transport segment with its pseudo-header; 0 when no addresses."""
    if src_ip is None or dst_ip is None:
        return 0
    pseudo = _pseudo_header(src_ip, dst_ip, protocol, len(segment))
    return internet_checksum(pseudo + segment)


def ethernet(
    payload: bytes,
    *,
    ethertype: int,
    src_mac: str = "02:00:00:00:00:01",
    dst_mac: str = "02:00:00:00:00:02",
    vlan_ids: Sequence[int] = (),
) -> bytes:
    """An Ethernet II frame (no FCS) carrying ``payload``.

    Args:
      payload: the bytes after the Ethernet header (and its VLAN tags).
      ethertype: EtherType of the payload (e.g. ``ETHERTYPE_IPV4``).
      src_mac, dst_mac: MAC addresses.
      vlan_ids: VLAN ids of the tags, outermost first. One id gives an 802.1Q tag
        (TPID 0x8100); with several, the outermost tag is an 802.1ad service tag
        (TPID 0x88a8) and the inner ones are 802.1Q tags (QinQ).
    """
    header = mac_bytes(dst_mac) + mac_bytes(src_mac)
    for index, vlan_id in enumerate(vlan_ids):
        if not 0 <= vlan_id < 4096:
            raise ValueError(f"VLAN id {vlan_id} outside 0..4095")
        tpid = ETHERTYPE_QINQ if index == 0 and len(vlan_ids) > 1 else ETHERTYPE_VLAN
        header += struct.pack("!HH", tpid, vlan_id)
    return header + struct.pack("!H", ethertype) + payload


def ipv4(
    payload: bytes,
    *,
    src: str,
    dst: str,
    protocol: int,
    ttl: int = 64,
    ident: int = 0,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    frag_offset_bytes: int = 0,
    options: bytes = b"",
    tos: int = 0,
    total_length: int | None = None,
) -> bytes:
    """An IPv4 packet: header with a correct checksum, then ``payload``.

    Args:
      payload: the bytes after the IP header (a transport segment or a fragment).
      src, dst: dotted-quad addresses.
      protocol: IP protocol number of the payload (e.g. ``IPPROTO_TCP``).
      ttl, ident, tos: the header fields of those names.
      dont_fragment, more_fragments: the DF and MF flags.
      frag_offset_bytes: fragment offset in bytes; must be a multiple of 8.
      options: IP options; padded with zero bytes (end of options list) to a
        multiple of 4 bytes, at most 40 bytes after padding.
      total_length: the total length field; by default header plus payload bytes.
        Set it only to build a packet whose length field lies.
    """
    if frag_offset_bytes % 8 or not 0 <= frag_offset_bytes < 8 * 8192:
        raise ValueError(f"fragment offset {frag_offset_bytes} bytes: need 8*k < 65536")
    options += b"\x00" * (-len(options) % 4)
    if len(options) > 40:
        raise ValueError(f"IPv4 options of {len(options)} bytes: at most 40")
    header_len = IPV4_HEADER_LEN + len(options)
    if total_length is None:
        total_length = header_len + len(payload)
    flags_fragment = (dont_fragment << 14) | (more_fragments << 13)
    flags_fragment |= frag_offset_bytes // 8
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | (header_len // 4),
        tos,
        total_length,
        ident,
        flags_fragment,
        ttl,
        protocol,
        0,
        ip_bytes(src),
        ip_bytes(dst),
    )
    header += options
    checksum = internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def ipv6_fragment_header(
    *, frag_offset_bytes: int, more_fragments: bool, ident: int
) -> tuple[int, bytes]:
    """An IPv6 fragment extension header as an ``(type, body)`` pair for ``ipv6``."""
    if frag_offset_bytes % 8:
        raise ValueError(f"fragment offset {frag_offset_bytes} bytes: need 8*k")
    offset_flags = frag_offset_bytes | int(more_fragments)
    return IPPROTO_FRAGMENT, struct.pack("!xHI", offset_flags, ident)


def _ipv6_extension(ext_type: int, next_header: int, body: bytes) -> bytes:
    """One IPv6 extension header: its next-header byte, length byte and body."""
    if ext_type == IPPROTO_FRAGMENT:
        # Fixed 8 bytes: next header, then the 7-byte body from ipv6_fragment_header.
        if len(body) != 7:
            raise ValueError(f"fragment header body of {len(body)} bytes: need 7")
        return struct.pack("!B", next_header) + body
    if ext_type == IPPROTO_AH:
        # Length in 4-byte units, minus 2.
        body += b"\x00" * (-(len(body) + 2) % 4)
        return struct.pack("!BB", next_header, (len(body) + 2) // 4 - 2) + body
    # Hop-by-hop, routing, destination options and the like: length in 8-byte
    # units, not counting the first 8; the body is padded with zero bytes (Pad1).
    body += b"\x00" * (-(len(body) + 2) % 8)
    return struct.pack("!BB", next_header, (len(body) + 2) // 8 - 1) + body


def ipv6(
    payload: bytes,
    *,
    src: str,
    dst: str,
    next_header: int,
    hop_limit: int = 64,
    flow_label: int = 0,
    traffic_class: int = 0,
    extension_headers: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """An IPv6 packet: fixed header, extension headers, then ``payload``.

    Args:
      payload: the bytes after the last extension header.
      src, dst: IPv6 address strings.
      next_header: protocol number of ``payload`` (e.g. ``IPPROTO_TCP``).
      hop_limit, flow_label, traffic_class: the header fields of those names.
      extension_headers: ``(type, body)`` pairs in order, where ``type`` is the
        protocol number of the extension header (0 hop-by-hop, 43 routing,
        44 fragment, 51 AH, 60 destination options). ``body`` is what follows the
        next-header and length bytes, padded here to the header's length unit; for
        a fragment header use ``ipv6_fragment_header``.
    """
    extensions = list(extension_headers)
    chain = b""
    for index, (ext_type, body) in enumerate(extensions):
        following = (
            extensions[index + 1][0] if index + 1 < len(extensions) else next_header
        )
        chain += _ipv6_extension(ext_type, following, body)
    first = extensions[0][0] if extensions else next_header
    payload_length = len(chain) + len(payload)
    header = struct.pack(
        "!IHBB16s16s",
        (6 << 28) | (traffic_class << 20) | (flow_label & 0xFFFFF),
        payload_length,
        first,
        hop_limit,
        ip_bytes(src),
        ip_bytes(dst),
    )
    return header + chain + payload


def tcp_flags(flags: int | str) -> int:
    """The TCP flags byte from an int or letters such as ``"SA"`` (F S R P A U E C)."""
    if isinstance(flags, int):
        return flags
    value = 0
    for letter in flags.upper():
        if letter not in _TCP_FLAG_LETTERS:
            raise ValueError(f"TCP flags {flags!r}: unknown letter {letter!r}")
        value |= _TCP_FLAG_LETTERS[letter]
    return value


def tcp(
    *,
    src_port: int,
    dst_port: int,
    flags: int | str,
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
    urgent: int = 0,
    src_ip: str | None = None,
    dst_ip: str | None = None,
) -> bytes:
    """A TCP segment: header then ``payload``.

    Args:
      src_port, dst_port, seq, ack, window, urgent: the header fields.
      flags: the flags byte, or letters such as ``"S"``, ``"SA"``, ``"PA"``, ``"FA"``.
      options: TCP options, padded with zero bytes to a multiple of 4, at most 40.
      payload: application bytes.
      src_ip, dst_ip: the IP addresses the checksum's pseudo-header covers; when
        either is None the checksum field is left 0.
    """
    options += b"\x00" * (-len(options) % 4)
    if len(options) > 40:
        raise ValueError(f"TCP options of {len(options)} bytes: at most 40")
    header_len = TCP_HEADER_LEN + len(options)
    header = struct.pack(
        "!HHIIBBHHH",
        src_port,
        dst_port,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        (header_len // 4) << 4,
        tcp_flags(flags),
        window,
        0,
        urgent,
    )
    segment = header + options + payload
    checksum = _transport_checksum(segment, IPPROTO_TCP, src_ip, dst_ip)
    return segment[:16] + struct.pack("!H", checksum) + segment[18:]


def udp(
    *,
    src_port: int,
    dst_port: int,
    payload: bytes = b"",
    src_ip: str | None = None,
    dst_ip: str | None = None,
    length: int | None = None,
) -> bytes:
    """A UDP datagram: header then ``payload``.

    Args:
      src_port, dst_port: the ports.
      payload: application bytes.
      src_ip, dst_ip: addresses for the pseudo-header checksum; when either is None
        the checksum is 0 (meaning "none" over IPv4).
      length: the length field; by default 8 plus the payload bytes. Set it only to
        build a datagram whose length field lies.
    """
    if length is None:
        length = UDP_HEADER_LEN + len(payload)
    datagram = struct.pack("!HHHH", src_port, dst_port, length, 0) + payload
    checksum = _transport_checksum(datagram, IPPROTO_UDP, src_ip, dst_ip)
    if checksum == 0 and src_ip is not None:
        checksum = 0xFFFF  # a computed zero is sent as all ones
    return datagram[:6] + struct.pack("!H", checksum) + datagram[8:]


def icmp(icmp_type: int, code: int, payload: bytes = b"") -> bytes:
    """An ICMP (IPv4) message with its checksum.

    Args:
      icmp_type, code: the message type and code (8/0 echo request, 0/0 reply).
      payload: everything after the checksum: the 4-byte rest of header (for echo,
        identifier and sequence number) and the data. See ``icmp_echo``.
    """
    message = struct.pack("!BBH", icmp_type, code, 0) + payload
    checksum = internet_checksum(message)
    return message[:2] + struct.pack("!H", checksum) + message[4:]


def icmp_echo(*, ident: int, seq: int, data: bytes = b"", reply: bool = False) -> bytes:
    """An ICMP echo request (or reply) with identifier ``ident`` and number ``seq``."""
    return icmp(0 if reply else 8, 0, struct.pack("!HH", ident, seq) + data)


def icmpv6(
    icmp_type: int,
    code: int,
    payload: bytes = b"",
    *,
    src_ip: str | None = None,
    dst_ip: str | None = None,
) -> bytes:
    """An ICMPv6 message; its checksum covers the IPv6 pseudo-header.

    Args:
      icmp_type, code: the message type and code (128/0 echo request, 129/0 reply).
      payload: everything after the checksum (for echo: identifier, sequence
        number and data).
      src_ip, dst_ip: the IPv6 addresses of the packet; when either is None the
        checksum is left 0.
    """
    message = struct.pack("!BBH", icmp_type, code, 0) + payload
    checksum = _transport_checksum(message, IPPROTO_ICMPV6, src_ip, dst_ip)
    return message[:2] + struct.pack("!H", checksum) + message[4:]
