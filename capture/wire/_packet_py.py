"""Frame parser, pure Python: the twin of ext/packet.pyx (same signature, same errors)."""

from __future__ import annotations

from capture.errors import Truncated, Unsupported
from capture.wire.frame import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    ETHERTYPE_VLAN_OLD,
    IPV6_EXTENSIONS,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OLD,
    MAX_V6_EXTENSIONS,
    MAX_VLAN_TAGS,
    PROTO_FRAGMENT,
    PROTO_TCP,
    PROTO_UDP,
    Frame,
)

_VLAN = (ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_VLAN_OLD)


def _u16(b, o):
    return (b[o] << 8) | b[o + 1]


def _u32(b, o):
    return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


def _ethertype_walk(data, off, etype, n):
    tags = 0
    while etype in _VLAN:
        tags += 1
        if tags > MAX_VLAN_TAGS:
            raise Unsupported(f"more than {MAX_VLAN_TAGS} VLAN tags")
        if off + 4 > n:
            raise Truncated(f"VLAN tag needs 4 bytes at offset {off}, frame has {n}")
        etype = _u16(data, off + 2)
        off += 4
    if etype == ETHERTYPE_IPV4:
        return off, 4
    if etype == ETHERTYPE_IPV6:
        return off, 6
    raise Unsupported(f"ethertype 0x{etype:04x} is not IP")


def _link(data, linktype, n):
    """Return (offset of the IP header, expected IP version or 0 for 'read the nibble')."""
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            raise Truncated(f"Ethernet header needs 14 bytes, frame has {n}")
        return _ethertype_walk(data, 14, _u16(data, 12), n)
    if linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            raise Truncated(f"Linux SLL header needs 16 bytes, frame has {n}")
        return _ethertype_walk(data, 16, _u16(data, 14), n)
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            raise Truncated(f"Linux SLL2 header needs 20 bytes, frame has {n}")
        return _ethertype_walk(data, 20, _u16(data, 0), n)
    if linktype in (LINKTYPE_RAW_OLD, LINKTYPE_RAW):
        return 0, 0
    if linktype == LINKTYPE_IPV4:
        return 0, 4
    if linktype == LINKTYPE_IPV6:
        return 0, 6
    if linktype == LINKTYPE_NULL:
        if n < 4:
            raise Truncated(f"loopback header needs 4 bytes, frame has {n}")
        fam = data[0] | (data[1] << 8) | (data[2] << 16) | (data[3] << 24)
        if fam > 0xFFFF:  # written in the other byte order
            fam = _u32(data, 0)
        if fam == 2:
            return 4, 4
        if fam in (24, 28, 30):
            return 4, 6
        raise Unsupported(f"loopback address family {fam} is not IP")
    raise Unsupported(f"link type {linktype} is not supported")


def parse(data, linktype: int) -> Frame:
    """Decode one captured frame down to its UDP/TCP header (see :class:`Frame`)."""
    n = len(data)
    off, ver = _link(data, linktype, n)
    if off >= n:
        raise Truncated(f"no IP header at offset {off}, frame has {n} bytes")
    nib = data[off] >> 4
    if ver == 0:
        ver = nib
    if nib != ver or ver not in (4, 6):
        raise Unsupported(f"IP version {nib} where {ver if ver else '4 or 6'} was expected")
    ip_off = off
    frag_id, frag_off, frag_more = -1, 0, False
    if ver == 4:
        if n - off < 20:
            raise Truncated(f"IPv4 header needs 20 bytes, {n - off} left")
        ihl = (data[off] & 0x0F) * 4
        total = _u16(data, off + 2)
        if ihl < 20:
            raise Truncated(f"IPv4 header length {ihl} is below 20")
        if total < ihl:
            raise Truncated(f"IPv4 total length {total} is below its header length {ihl}")
        if total > n - off:
            raise Truncated(f"IPv4 total length {total} exceeds the {n - off} bytes captured")
        ff = _u16(data, off + 6)
        proto = data[off + 9]
        src = bytes(data[off + 12 : off + 16])
        dst = bytes(data[off + 16 : off + 20])
        if ff & 0x3FFF:
            frag_id = _u16(data, off + 4)
            frag_off = (ff & 0x1FFF) * 8
            frag_more = bool(ff & 0x2000)
        l4 = off + ihl
        end = off + total
    else:
        if n - off < 40:
            raise Truncated(f"IPv6 header needs 40 bytes, {n - off} left")
        plen = _u16(data, off + 4)
        if plen > n - off - 40:
            raise Truncated(f"IPv6 payload length {plen} exceeds the {n - off - 40} bytes captured")
        proto = data[off + 6]
        src = bytes(data[off + 8 : off + 24])
        dst = bytes(data[off + 24 : off + 40])
        l4 = off + 40
        end = l4 + plen
        hops = 0
        while proto in IPV6_EXTENSIONS:
            hops += 1
            if hops > MAX_V6_EXTENSIONS:
                raise Unsupported(f"more than {MAX_V6_EXTENSIONS} IPv6 extension headers")
            if end - l4 < 8:
                raise Truncated(f"IPv6 extension header needs 8 bytes, {end - l4} left")
            nxt = data[l4]
            if proto == PROTO_FRAGMENT:
                fo = _u16(data, l4 + 2)
                frag_off = fo & 0xFFF8
                frag_more = bool(fo & 1)
                frag_id = _u32(data, l4 + 4)
                hl = 8
            else:
                hl = (data[l4 + 1] + 1) * 8
                if end - l4 < hl:
                    raise Truncated(f"IPv6 extension header of {hl} bytes, {end - l4} left")
            proto = nxt
            l4 += hl
        if frag_id >= 0 and frag_off == 0 and not frag_more:
            frag_id = -1  # an atomic fragment is a whole datagram
    l4_len = end - l4
    sport = dport = payload_off = payload_len = tcp_seq = 0
    tcp_flags = -1
    if frag_id < 0:
        if proto == PROTO_UDP:
            if l4_len < 8:
                raise Truncated(f"UDP header needs 8 bytes, {l4_len} left")
            ulen = _u16(data, l4 + 4)
            if ulen < 8 or ulen > l4_len:
                raise Truncated(f"UDP length {ulen} does not fit the {l4_len} bytes of the datagram")
            sport = _u16(data, l4)
            dport = _u16(data, l4 + 2)
            payload_off = l4 + 8
            payload_len = ulen - 8
        elif proto == PROTO_TCP:
            if l4_len < 20:
                raise Truncated(f"TCP header needs 20 bytes, {l4_len} left")
            doff = (data[l4 + 12] >> 4) * 4
            if doff < 20 or doff > l4_len:
                raise Truncated(f"TCP data offset {doff} does not fit the {l4_len} bytes of the segment")
            sport = _u16(data, l4)
            dport = _u16(data, l4 + 2)
            tcp_seq = _u32(data, l4 + 4)
            tcp_flags = data[l4 + 13]
            payload_off = l4 + doff
            payload_len = l4_len - doff
    return Frame(
        ver,
        src,
        dst,
        proto,
        ip_off,
        l4,
        l4_len,
        frag_id,
        frag_off,
        frag_more,
        sport,
        dport,
        payload_off,
        payload_len,
        tcp_seq,
        tcp_flags,
    )
