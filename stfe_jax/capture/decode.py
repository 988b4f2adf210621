"""Compiled decode of link, network and transport headers into packet columns.

For every packet of a batch the decoder finds the network header behind the link
layer (Ethernet with 802.1Q/QinQ tags, LLC/SNAP, PPPoE, MPLS and a few vendor
shims; raw IP; Linux cooked SLL and SLL2; BSD loopback; PPP; Cisco HDLC; FDDI;
Frame Relay; ARCNET; unencrypted 802.11 data frames, bare or behind radiotap,
Prism or PPI headers; NFLOG; IPNET), then reads the outermost IPv4
or IPv6 header (IPv4 options and IPv6 extension headers are walked) and the first
bytes of the transport header, as far as the captured bytes go.
"""

from __future__ import annotations

import numba
import numpy as np

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
# Transport protocols whose first four bytes are source and destination ports.
_PORT_PROTOCOLS = (6, 17, 33, 132, 136)
# BSD loopback address families meaning IPv4 and IPv6 (Linux, Windows, BSDs, macOS).
_AF_INET = 2
_AF_INET6 = (10, 23, 24, 28, 30)
# Bounds on header chains, so that no packet can make the decoder loop long.
_MAX_LINK_HEADERS = 256
_MAX_IPV6_EXTENSIONS = 1024


@numba.njit(cache=True)
def _be16(data, pos):
    return (np.int64(data[pos]) << 8) | np.int64(data[pos + 1])


@numba.njit(cache=True)
def _be32(data, pos):
    return (
        (np.int64(data[pos]) << 24)
        | (np.int64(data[pos + 1]) << 16)
        | (np.int64(data[pos + 2]) << 8)
        | np.int64(data[pos + 3])
    )


@numba.njit(cache=True)
def _ppp_protocol(data, start, caplen, pos):
    """Reads a PPP protocol field at ``pos`` (one byte when compressed); returns
    (offset after it, equivalent ethertype or -1)."""
    if pos >= caplen:
        return pos, -1
    if data[start + pos] & 1:
        protocol = np.int64(data[start + pos])
        pos += 1
    else:
        if pos + 2 > caplen:
            return pos, -1
        protocol = _be16(data, start + pos)
        pos += 2
    if protocol == 0x21:
        return pos, ETHERTYPE_IPV4
    if protocol == 0x57:
        return pos, ETHERTYPE_IPV6
    if protocol == 0x281 or protocol == 0x283:
        return pos, 0x8847
    return pos, -1


@numba.njit(cache=True)
def _follow_ethertype(data, start, caplen, ethertype, pos):
    """Follows an ethertype whose payload starts at packet offset ``pos`` through
    VLAN tags and other shims, LLC/SNAP, PPPoE sessions and MPLS labels.

    Returns (network offset or -1, outermost VLAN id, family): family is 4 or 6
    when the link layer says which IP version follows, 0 when only the version
    nibble of the header tells (behind MPLS).
    """
    vlan_id = 0
    tagged = False
    for _ in range(_MAX_LINK_HEADERS):
        if ethertype == ETHERTYPE_IPV4:
            return pos, vlan_id, 4
        if ethertype == ETHERTYPE_IPV6:
            return pos, vlan_id, 6
        if (
            ethertype == 0x8100
            or ethertype == 0x88A8
            or ethertype == 0x9100
            or ethertype == 0x9200
        ):
            if pos + 4 > caplen:
                return -1, vlan_id, 0
            if not tagged:
                vlan_id = _be16(data, start + pos) & 0xFFF
                tagged = True
            ethertype = _be16(data, start + pos + 2)
            pos += 4
        elif ethertype == 0x8926 or ethertype == 0x893F or ethertype == 0x8909:
            # VN-Tag (4 bytes), 802.1BR E-Tag (6), Cisco MetaData (6), then a type.
            shim = 4 if ethertype == 0x8926 else 6
            if pos + shim + 2 > caplen:
                return -1, vlan_id, 0
            ethertype = _be16(data, start + pos + shim)
            pos += shim + 2
        elif ethertype == 0x8903 or ethertype == 0x88E7:
            # Cisco FabricPath (2-byte tag) or 802.1ah PBB (4-byte I-tag), then an
            # inner Ethernet header.
            shim = 2 if ethertype == 0x8903 else 4
            if pos + shim + 14 > caplen:
                return -1, vlan_id, 0
            ethertype = _be16(data, start + pos + shim + 12)
            pos += shim + 14
        elif ethertype == 0x88E5:  # MACsec: IP readable only when not encrypted
            if pos + 1 > caplen:
                return -1, vlan_id, 0
            tag_control = data[start + pos]
            if tag_control & 0x0C:
                return -1, vlan_id, 0
            shim = 14 if tag_control & 0x20 else 6
            if pos + shim + 2 > caplen:
                return -1, vlan_id, 0
            ethertype = _be16(data, start + pos + shim)
            pos += shim + 2
        elif ethertype == 0x894F:  # network service header
            if pos + 4 > caplen:
                return -1, vlan_id, 0
            next_protocol = data[start + pos + 3]
            pos += np.int64(data[start + pos + 1] & 0x3F) * 4
            if next_protocol == 1:
                ethertype = ETHERTYPE_IPV4
            elif next_protocol == 2:
                ethertype = ETHERTYPE_IPV6
            elif next_protocol == 3 and pos + 14 <= caplen:
                ethertype = _be16(data, start + pos + 12)
                pos += 14
            else:
                return -1, vlan_id, 0
        elif ethertype == 0x8864:  # PPPoE session: 6-byte header, PPP protocol
            pos, ethertype = _ppp_protocol(data, start, caplen, pos + 6)
            if ethertype < 0:
                return -1, vlan_id, 0
        elif ethertype == 0x8847 or ethertype == 0x8848:  # MPLS label stack
            bottom = False
            for _ in range(_MAX_LINK_HEADERS):
                if pos + 4 > caplen:
                    return -1, vlan_id, 0
                bottom = (data[start + pos + 2] & 1) == 1
                pos += 4
                if bottom:
                    break
            if not bottom or pos >= caplen:
                return -1, vlan_id, 0
            version = data[start + pos] >> 4
            if version == 4 or version == 6:
                return pos, vlan_id, 0
            if version == 0 and pos + 4 + 14 <= caplen:
                # Ethernet pseudowire behind a control word.
                ethertype = _be16(data, start + pos + 4 + 12)
                pos += 4 + 14
            else:
                return -1, vlan_id, 0
        elif ethertype <= 1500:  # 802.3 length: LLC, IP only behind SNAP
            if (
                pos + 8 <= caplen
                and data[start + pos] == 0xAA
                and data[start + pos + 1] == 0xAA
                and data[start + pos + 2] == 0x03
            ):
                ethertype = _be16(data, start + pos + 6)
                pos += 8
            else:
                return -1, vlan_id, 0
        else:
            return -1, vlan_id, 0
    return -1, vlan_id, 0


@numba.njit(cache=True)
def _ieee80211_network(data, start, caplen, pos):
    """Network offset and family behind an 802.11 frame at ``pos``: only data
    frames that are not encrypted and carry LLC/SNAP; (-1, 0) otherwise."""
    if pos + 24 > caplen:
        return -1, 0, 0
    frame_control = data[start + pos]
    flags = data[start + pos + 1]
    if (frame_control >> 2) & 3 != 2 or flags & 0x40:  # not data, or protected
        return -1, 0, 0
    header_len = 24
    if flags & 0x03 == 0x03:  # to and from the distribution system: 4 addresses
        header_len += 6
    if frame_control & 0x80:  # QoS data: QoS control, maybe HT control
        header_len += 2
        if flags & 0x80:
            header_len += 4
    if frame_control & 0x40:  # null-data subtypes carry no body
        return -1, 0, 0
    return _follow_ethertype(data, start, caplen, 0, pos + header_len)


@numba.njit(cache=True)
def _nflog_network(data, start, caplen):
    """Network offset and family of a Linux NFLOG record (TLVs after a 4-byte
    header; the payload TLV has type 9), or (-1, 0)."""
    if caplen < 4:
        return -1, 0
    family = data[start]
    if family == 2:
        family = 4
    elif family == 10:
        family = 6
    else:
        return -1, 0
    pos = 4
    while pos + 4 <= caplen:
        length = np.int64(data[start + pos]) | (np.int64(data[start + pos + 1]) << 8)
        kind = np.int64(data[start + pos + 2]) | (np.int64(data[start + pos + 3]) << 8)
        if length < 4:
            return -1, 0
        if kind & 0x7FFF == 9:
            return pos + 4, family
        pos += (length + 3) & ~3
    return -1, 0


@numba.njit(cache=True)
def find_network(data, start, caplen, link_type):
    """Offset of the network header in one packet, its outermost VLAN id, and the
    IP version the link layer announces (0: the header's version nibble decides).

    Returns (offset or -1, vlan id, family); the offset is relative to the packet.
    """
    if link_type == 1:  # Ethernet
        if caplen < 14:
            return -1, 0, 0
        return _follow_ethertype(data, start, caplen, _be16(data, start + 12), 14)
    if link_type == 101 or link_type == 12 or link_type == 14:  # raw IP
        return 0, 0, 0
    if link_type == 228:
        return 0, 0, 4
    if link_type == 229:
        return 0, 0, 6
    if link_type == 113:  # Linux cooked capture v1
        if caplen < 16:
            return -1, 0, 0
        return _follow_ethertype(data, start, caplen, _be16(data, start + 14), 16)
    if link_type == 276:  # Linux cooked capture v2
        if caplen < 20:
            return -1, 0, 0
        return _follow_ethertype(data, start, caplen, _be16(data, start + 0), 20)
    if link_type == 0 or link_type == 108:  # BSD loopback
        if caplen < 4:
            return -1, 0, 0
        family = (
            np.int64(data[start])
            | (np.int64(data[start + 1]) << 8)
            | (np.int64(data[start + 2]) << 16)
            | (np.int64(data[start + 3]) << 24)
        )
        if (family & 0xFFFF0000) != 0 and (family & 0xFFFF) == 0:
            family = (
                ((family >> 24) & 0xFF)
                | ((family >> 8) & 0xFF00)
                | ((family << 8) & 0xFF0000)
                | ((family << 24) & 0xFF000000)
            )
        if family == _AF_INET:
            return 4, 0, 4
        for inet6 in _AF_INET6:
            if family == inet6:
                return 4, 0, 6
        return -1, 0, 0
    if link_type == 9 or link_type == 50 or link_type == 104:
        # PPP, PPP in HDLC framing, Cisco HDLC (address, control, ethertype).
        if caplen >= 4 and (data[start] == 0x0F or data[start] == 0x8F):
            return _follow_ethertype(data, start, caplen, _be16(data, start + 2), 4)
        if link_type == 104:
            return -1, 0, 0
        pos = 0
        if caplen >= 2 and data[start] == 0xFF and data[start + 1] == 3:
            pos = 2
        pos, ethertype = _ppp_protocol(data, start, caplen, pos)
        if ethertype < 0:
            return -1, 0, 0
        return _follow_ethertype(data, start, caplen, ethertype, pos)
    if link_type == 107:  # Frame Relay: Q.922 address, then IETF or Cisco
        address_len = 2
        while address_len < 4 and address_len <= caplen:
            if data[start + address_len - 1] & 1:  # address extension bit
                break
            address_len += 1
        pos = address_len
        if pos + 2 > caplen:
            return -1, 0, 0
        if data[start + pos] != 0x03:  # Cisco encapsulation: an ethertype
            return _follow_ethertype(
                data, start, caplen, _be16(data, start + pos), pos + 2
            )
        nlpid = data[start + pos + 1]
        if nlpid == 0xCC:
            return pos + 2, 0, 4
        if nlpid == 0x8E:
            return pos + 2, 0, 6
        if nlpid == 0x80 and caplen >= pos + 7:  # SNAP: OUI, then an ethertype
            return _follow_ethertype(
                data, start, caplen, _be16(data, start + pos + 5), pos + 7
            )
        return -1, 0, 0
    if link_type == 129:  # Linux ARCNET: source, destination, offset, protocol
        if caplen < 5:
            return -1, 0, 0
        protocol = data[start + 4]
        if protocol == 0xF0:  # RFC 1051 IP: no fragmentation header
            return 5, 0, 4
        if protocol == 0xD4 or protocol == 0xC4:  # RFC 1201 IPv4 / IPv6
            family = 4 if protocol == 0xD4 else 6
            if caplen >= 6 and data[start + 5] == 0xFF:  # exception packet
                return 12, 0, family
            return 8, 0, family
        return -1, 0, 0
    if link_type == 105:  # IEEE 802.11
        return _ieee80211_network(data, start, caplen, 0)
    if link_type == 127:  # radiotap header (little-endian length), then 802.11
        if caplen < 4:
            return -1, 0, 0
        radiotap_len = np.int64(data[start + 2]) | (np.int64(data[start + 3]) << 8)
        return _ieee80211_network(data, start, caplen, radiotap_len)
    if link_type == 119:  # Prism monitor header (144 bytes), then 802.11
        return _ieee80211_network(data, start, caplen, 144)
    if link_type == 192:  # PPI: little-endian header length and inner DLT
        if caplen < 8:
            return -1, 0, 0
        ppi_len = np.int64(data[start + 2]) | (np.int64(data[start + 3]) << 8)
        inner = np.int64(data[start + 4]) | (np.int64(data[start + 5]) << 8)
        if inner == 1 and ppi_len + 14 <= caplen:
            ethertype = _be16(data, start + ppi_len + 12)
            return _follow_ethertype(data, start, caplen, ethertype, ppi_len + 14)
        if inner == 105:
            return _ieee80211_network(data, start, caplen, ppi_len)
        return -1, 0, 0
    if link_type == 10:  # FDDI: frame control and addresses, then LLC
        return _follow_ethertype(data, start, caplen, 0, 13)
    if link_type == 226:  # Solaris IPNET: 24-byte header, address family
        if caplen < 24:
            return -1, 0, 0
        if data[start + 1] == 2:
            return 24, 0, 4
        if data[start + 1] == 26:
            return 24, 0, 6
        return -1, 0, 0
    # TODO: PKTAP, Juniper, 6LoWPAN, DSA-tagged and other rare link types
    # are not decoded (counted and reported by the reader instead); none is
    # common in traffic datasets.
    if link_type == 239:  # Linux NFLOG
        net, family = _nflog_network(data, start, caplen)
        return net, 0, family
    return -1, 0, 0


@numba.njit(cache=True)
def decode_packets(
    data,
    data_start,
    caplen,
    link_type,
    vlan_id,
    net_offset,
    ip_version,
    src_addr,
    dst_addr,
    protocol,
    l4_offset,
    src_port,
    dst_port,
    tcp_flags,
    ip_id,
    frag_offset,
    more_fragments,
    is_fragment,
):
    """Fills the decoded columns of every packet (see ``PacketBatch``)."""
    for i in range(data_start.shape[0]):
        start = data_start[i]
        cap = np.int64(caplen[i])
        src_addr[i, :] = 0
        dst_addr[i, :] = 0
        ip_version[i] = 0
        protocol[i] = 0
        l4_offset[i] = -1
        src_port[i] = 0
        dst_port[i] = 0
        tcp_flags[i] = 0
        ip_id[i] = 0
        frag_offset[i] = 0
        more_fragments[i] = False
        is_fragment[i] = False

        net, vlan, family = find_network(data, start, cap, link_type[i])
        vlan_id[i] = vlan
        net_offset[i] = -1
        if net < 0 or net >= cap:
            continue
        version = data[start + net] >> 4
        if family == 0:
            if version != 4 and version != 6:
                continue
            family = version
        # A header that cannot be decoded (version nibble contradicting the link
        # layer, or cut short by the capture) keeps net_offset -1 but still has
        # its ip_version, as Wireshark counts it. Damaged headers announced as
        # IPv6 are not IP for Wireshark, so not for us either.
        if version != family:
            if family == 4:
                ip_version[i] = 4
            continue
        ip_version[i] = family
        transport = -1
        end = cap  # end of the captured bytes of the IP packet
        # The transport header is only looked at when the IP header's length
        # field leaves room for it.
        reported_end = np.int64(1) << 40
        if version == 4:
            if cap - net < 20:
                continue  # header cut short: counted as IPv4, not decoded
            ip = start + net
            header_len = np.int64(data[ip] & 0x0F) * 4
            total_len = _be16(data, ip + 2)
            flags_offset = _be16(data, ip + 6)
            for k in range(4):
                src_addr[i, 12 + k] = data[ip + 12 + k]
                dst_addr[i, 12 + k] = data[ip + 16 + k]
            src_addr[i, 10] = 0xFF
            src_addr[i, 11] = 0xFF
            dst_addr[i, 10] = 0xFF
            dst_addr[i, 11] = 0xFF
            net_offset[i] = net
            protocol[i] = data[ip + 9]
            ip_id[i] = _be16(data, ip + 4)
            offset_bytes = (flags_offset & 0x1FFF) * 8
            more = (flags_offset & 0x2000) != 0
            frag_offset[i] = offset_bytes
            more_fragments[i] = more
            is_fragment[i] = more or offset_bytes != 0
            if header_len < 20:
                continue
            if total_len != 0:  # 0: segmentation offload, length unknown
                if total_len < header_len:
                    continue
                end = min(cap, net + total_len)
                reported_end = net + total_len
            if offset_bytes == 0:
                transport = net + header_len
        elif version == 6:
            if cap - net < 40:
                continue  # header cut short: counted as IPv6, not decoded
            ip = start + net
            net_offset[i] = net
            for k in range(16):
                src_addr[i, k] = data[ip + 8 + k]
                dst_addr[i, k] = data[ip + 24 + k]
            payload_len = _be16(data, ip + 4)
            if payload_len != 0:  # 0: jumbogram or offload, length unknown
                end = min(cap, net + 40 + payload_len)
                reported_end = net + 40 + payload_len
            next_header = np.int64(data[ip + 6])
            pos = net + 40
            complete = True
            for _ in range(_MAX_IPV6_EXTENSIONS):
                if next_header == 0 or next_header == 43 or next_header == 60:
                    if pos + 2 > end:
                        complete = False
                        break
                    following = np.int64(data[start + pos])
                    pos += (np.int64(data[start + pos + 1]) + 1) * 8
                    next_header = following
                elif next_header == 51:  # authentication header
                    if pos + 2 > end:
                        complete = False
                        break
                    following = np.int64(data[start + pos])
                    pos += (np.int64(data[start + pos + 1]) + 2) * 4
                    next_header = following
                elif next_header == 44:  # fragment header
                    if pos + 8 > end:
                        complete = False
                        break
                    fragment = _be16(data, start + pos + 2)
                    is_fragment[i] = True
                    frag_offset[i] = fragment & 0xFFF8
                    more_fragments[i] = (fragment & 1) != 0
                    ip_id[i] = _be32(data, start + pos + 4)
                    next_header = np.int64(data[start + pos])
                    pos += 8
                    if (fragment & 0xFFF8) != 0:
                        complete = False
                        break
                else:
                    break
            protocol[i] = next_header
            if complete:
                transport = pos

        # The transport header's offset is kept even when none of its bytes were
        # captured (a header-only trace cut right after the IP header).
        if transport < 0 or transport > end or transport >= reported_end:
            continue
        l4_offset[i] = transport
        proto = protocol[i]
        is_port_protocol = False
        for port_protocol in _PORT_PROTOCOLS:
            if proto == port_protocol:
                is_port_protocol = True
        if is_port_protocol and transport + 4 <= end:
            src_port[i] = _be16(data, start + transport)
            dst_port[i] = _be16(data, start + transport + 2)
        if proto == 6 and transport + 14 <= end:
            tcp_flags[i] = data[start + transport + 13]
