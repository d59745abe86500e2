"""Frame parser, pure Python: the twin of ext/packet.pyx (same signature, same errors).

A frame is walked down to its UDP/TCP header; a remote mirror's frame (ERSPAN II/III, GRE
transparent Ethernet bridging, VXLAN, TZSP) is walked again from the frame it carries, up to
MAX_TUNNELS deep, so that the outer addresses never become a call's.
"""

from __future__ import annotations

from capture.errors import Truncated, Unsupported
from capture.wire.frame import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    ETHERTYPE_VLAN_OLD,
    GRE_ERSPAN2,
    GRE_ERSPAN3,
    GRE_TEB,
    IPV6_EXTENSIONS,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OLD,
    MAX_TUNNELS,
    MAX_V6_EXTENSIONS,
    MAX_VLAN_TAGS,
    PROTO_FRAGMENT,
    PROTO_GRE,
    PROTO_TCP,
    PROTO_UDP,
    TZSP_PORT,
    VXLAN_PORT,
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
    """Decode one captured frame down to its UDP/TCP header (see :class:`Frame`); a tunnel's
    down to the inner frame's."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    base = tunnels = 0
    while True:
        f = _parse_one(view[base:] if base else view, linktype)
        inner = _tunnel(view[base:] if base else view, f)
        if inner is None:
            break
        tunnels += 1
        if tunnels > MAX_TUNNELS:
            raise Unsupported(f"more than {MAX_TUNNELS} nested tunnels")
        off, linktype = inner
        base += off
    if not base:
        return f
    return f._replace(
        ip_off=f.ip_off + base,
        l4_off=f.l4_off + base,
        payload_off=f.payload_off + base,
        inner_off=base,
    )


def _tunnel(data, f: Frame) -> tuple[int, int] | None:
    """Where the frame a tunnel carries starts, and its link type; None if ``f`` is no tunnel."""
    if f.frag_id >= 0:
        return None
    if f.proto == PROTO_GRE:
        return _gre(data, f.l4_off, f.l4_len)
    if f.proto == PROTO_UDP:
        p, left = f.payload_off, f.payload_len
        if f.dport == VXLAN_PORT and left >= 8 and data[p] & 0x08:  # the I flag: a VNI follows
            return p + 8, LINKTYPE_ETHERNET
        if f.dport == TZSP_PORT and left >= 4 and data[p] == 1 and data[p + 1] <= 1:
            return _tzsp(data, p, left)
    return None


def _gre(data, p: int, left: int) -> tuple[int, int] | None:
    """RFC 2784/2890 GRE: the frame after its header, for the protocols a mirror uses."""
    if left < 4:
        raise Truncated(f"GRE header of 4 bytes, {left} left")
    flags = _u16(data, p)
    if flags & 0x4007:  # version 1 (PPTP) or source routing (RFC 1701): not a mirror
        return None
    hl = 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
    if left < hl:
        raise Truncated(f"GRE header of {hl} bytes, {left} left")
    ptype = _u16(data, p + 2)
    p, left = p + hl, left - hl
    if ptype == GRE_TEB:
        return p, LINKTYPE_ETHERNET
    if ptype == GRE_ERSPAN2:
        if not flags & 0x1000:  # type I: no sequence number, no ERSPAN header
            return p, LINKTYPE_ETHERNET
        if left < 8:
            raise Truncated(f"ERSPAN header of 8 bytes, {left} left")
        if data[p] >> 4 != 1:
            raise Unsupported(f"ERSPAN version {data[p] >> 4} in a type 2 header")
        return p + 8, LINKTYPE_ETHERNET
    if ptype == GRE_ERSPAN3:
        if left < 12:
            raise Truncated(f"ERSPAN header of 12 bytes, {left} left")
        if data[p] >> 4 != 2:
            raise Unsupported(f"ERSPAN version {data[p] >> 4} in a type 3 header")
        hl = 20 if data[p + 11] & 1 else 12  # O: an 8-byte platform-specific subheader follows
        if left < hl:
            raise Truncated(f"ERSPAN header of {hl} bytes, {left} left")
        ft = (data[p + 10] >> 2) & 0x1F
        if ft not in (0, 2):
            raise Unsupported(f"ERSPAN type 3 frame type {ft} is not Ethernet or IP")
        return p + hl, LINKTYPE_ETHERNET if ft == 0 else LINKTYPE_RAW
    if ptype in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return p, LINKTYPE_RAW
    return None


def _tzsp(data, p: int, left: int) -> tuple[int, int]:
    """TZSP: version 1, a packet (type 0 or 1); tagged fields up to the END tag, then the frame."""
    encap = _u16(data, p + 2)
    q, end = p + 4, p + left
    while True:
        if q >= end:
            raise Truncated(f"TZSP tags run past the {left} bytes of the datagram")
        tag = data[q]
        if tag == 1:  # END
            q += 1
            break
        if tag == 0:  # PADDING
            q += 1
            continue
        if q + 2 > end or q + 2 + data[q + 1] > end:
            raise Truncated(f"TZSP tags run past the {left} bytes of the datagram")
        q += 2 + data[q + 1]
    if encap != 1:
        raise Unsupported(f"TZSP encapsulation {encap} is not Ethernet")
    return q, LINKTYPE_ETHERNET


def _parse_one(data, linktype: int) -> Frame:
    """One frame (the outer one of a tunnel) down to its UDP/TCP header."""
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
