# C-level frame parser shared by ext/packet.pyx (the def wrapper) and ext/engine.pyx (the hot
# loop). The pure-Python twin is capture/wire/_packet_py.py; error codes map to its messages.
from libc.stdint cimport int64_t, uint32_t

cdef enum:
    OK = 0
    E_ETH = 1
    E_SLL = 2
    E_SLL2 = 3
    E_NULL = 4
    U_NULLFAM = 5
    U_LINK = 6
    U_VLAN = 7
    E_VLAN = 8
    U_ETYPE = 9
    E_NOIP = 10
    U_IPVER = 11
    E_V4HDR = 12
    E_IHL = 13
    E_TOTAL_LT = 14
    E_TOTAL_GT = 15
    E_V6HDR = 16
    E_V6PLEN = 17
    U_V6EXT = 18
    E_V6EXT8 = 19
    E_V6EXTLEN = 20
    E_UDPHDR = 21
    E_UDPLEN = 22
    E_TCPHDR = 23
    E_TCPOFF = 24
    E_GRE = 25
    E_ERSPAN = 26
    U_ERSPAN = 27
    U_ERSPANFT = 28
    E_TZSP = 29
    U_TZSP = 30
    U_TUNNELS = 31
    FIRST_UNSUPPORTED_MARK = 100

# the wire's numbers, as capture/wire/frame.py names them (tests/test_packet.py checks they agree)
cdef enum:
    LINKTYPE_NULL = 0
    LINKTYPE_ETHERNET = 1
    LINKTYPE_RAW_OLD = 12
    LINKTYPE_RAW = 101
    LINKTYPE_LINUX_SLL = 113
    LINKTYPE_IPV4 = 228
    LINKTYPE_IPV6 = 229
    LINKTYPE_LINUX_SLL2 = 276
    ETHERTYPE_IPV4 = 0x0800
    ETHERTYPE_IPV6 = 0x86DD
    ETHERTYPE_VLAN = 0x8100
    ETHERTYPE_QINQ = 0x88A8
    ETHERTYPE_VLAN_OLD = 0x9100
    PROTO_HOPOPTS = 0
    PROTO_ICMP = 1
    PROTO_TCP = 6
    PROTO_UDP = 17
    PROTO_ROUTING = 43
    PROTO_FRAGMENT = 44
    PROTO_ICMPV6 = 58
    PROTO_DSTOPTS = 60
    PROTO_GRE = 47
    MAX_VLAN_TAGS = 4
    MAX_V6_EXTENSIONS = 8
    GRE_TEB = 0x6558
    GRE_ERSPAN2 = 0x88BE
    GRE_ERSPAN3 = 0x22EB
    VXLAN_PORT = 4789
    TZSP_PORT = 37008
    MAX_TUNNELS = 2

cdef struct FrameC:
    int ip_version
    int ip_off
    int l4_off
    int l4_len
    int proto
    int src_off
    int dst_off
    int64_t frag_id
    int frag_off
    int frag_more
    int sport
    int dport
    int payload_off
    int payload_len
    uint32_t tcp_seq
    int tcp_flags
    int err
    int64_t e1
    int64_t e2
    int inner_off           # where a tunnel's inner frame starts (0: not encapsulated)

cdef inline bint is_unsupported(int err) noexcept nogil:
    return (err == U_NULLFAM or err == U_LINK or err == U_VLAN or err == U_ETYPE or err == U_IPVER or err == U_V6EXT
            or err == U_ERSPAN or err == U_ERSPANFT or err == U_TZSP or err == U_TUNNELS)

cdef inline int u16(const unsigned char* b, Py_ssize_t o) noexcept nogil:
    return (b[o] << 8) | b[o + 1]

cdef inline uint32_t u32(const unsigned char* b, Py_ssize_t o) noexcept nogil:
    return (<uint32_t>b[o] << 24) | (<uint32_t>b[o + 1] << 16) | (<uint32_t>b[o + 2] << 8) | b[o + 3]

cdef inline int fail(FrameC* f, int code, int64_t a, int64_t b) noexcept nogil:
    f.err = code
    f.e1 = a
    f.e2 = b
    return code

cdef inline int eth_walk(const unsigned char* d, Py_ssize_t n, Py_ssize_t off, int etype, FrameC* f,
                         int* ver) noexcept nogil:
    cdef int tags = 0
    while etype == ETHERTYPE_VLAN or etype == ETHERTYPE_QINQ or etype == ETHERTYPE_VLAN_OLD:
        tags += 1
        if tags > MAX_VLAN_TAGS:
            return fail(f, U_VLAN, 0, 0)
        if off + 4 > n:
            return fail(f, E_VLAN, off, n)
        etype = u16(d, off + 2)
        off += 4
    if etype == ETHERTYPE_IPV4:
        ver[0] = 4
    elif etype == ETHERTYPE_IPV6:
        ver[0] = 6
    else:
        return fail(f, U_ETYPE, etype, 0)
    f.ip_off = <int>off
    return OK

cdef inline int parse_one(const unsigned char* d, Py_ssize_t n, int linktype, FrameC* f) noexcept nogil:
    """One frame (the outer one of a tunnel) down to its UDP/TCP header."""
    cdef int ver = 0, nib, ihl, total, ff, hops, nxt, hl, fo, ulen, doff, plen
    cdef uint32_t fam
    cdef Py_ssize_t off, l4, end
    f.err = OK
    f.frag_id = -1
    f.frag_off = 0
    f.frag_more = 0
    f.sport = 0
    f.dport = 0
    f.payload_off = 0
    f.payload_len = 0
    f.tcp_seq = 0
    f.tcp_flags = -1
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return fail(f, E_ETH, n, 0)
        if eth_walk(d, n, 14, u16(d, 12), f, &ver):
            return f.err
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return fail(f, E_SLL, n, 0)
        if eth_walk(d, n, 16, u16(d, 14), f, &ver):
            return f.err
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return fail(f, E_SLL2, n, 0)
        if eth_walk(d, n, 20, u16(d, 0), f, &ver):
            return f.err
    elif linktype == LINKTYPE_RAW_OLD or linktype == LINKTYPE_RAW:
        f.ip_off = 0
    elif linktype == LINKTYPE_IPV4:
        f.ip_off = 0
        ver = 4
    elif linktype == LINKTYPE_IPV6:
        f.ip_off = 0
        ver = 6
    elif linktype == LINKTYPE_NULL:
        if n < 4:
            return fail(f, E_NULL, n, 0)
        fam = d[0] | (<uint32_t>d[1] << 8) | (<uint32_t>d[2] << 16) | (<uint32_t>d[3] << 24)
        if fam > 0xFFFF:
            fam = u32(d, 0)
        if fam == 2:
            ver = 4
        elif fam == 24 or fam == 28 or fam == 30:
            ver = 6
        else:
            return fail(f, U_NULLFAM, fam, 0)
        f.ip_off = 4
    else:
        return fail(f, U_LINK, linktype, 0)
    off = f.ip_off
    if off >= n:
        return fail(f, E_NOIP, off, n)
    nib = d[off] >> 4
    if ver == 0:
        ver = nib
    if nib != ver or (ver != 4 and ver != 6):
        return fail(f, U_IPVER, nib, ver)
    f.ip_version = ver
    if ver == 4:
        if n - off < 20:
            return fail(f, E_V4HDR, n - off, 0)
        ihl = (d[off] & 0x0F) * 4
        total = u16(d, off + 2)
        if ihl < 20:
            return fail(f, E_IHL, ihl, 0)
        if total < ihl:
            return fail(f, E_TOTAL_LT, total, ihl)
        if total > n - off:
            return fail(f, E_TOTAL_GT, total, n - off)
        ff = u16(d, off + 6)
        f.proto = d[off + 9]
        f.src_off = <int>(off + 12)
        f.dst_off = <int>(off + 16)
        if ff & 0x3FFF:
            f.frag_id = u16(d, off + 4)
            f.frag_off = (ff & 0x1FFF) * 8
            f.frag_more = 1 if ff & 0x2000 else 0
        l4 = off + ihl
        end = off + total
    else:
        if n - off < 40:
            return fail(f, E_V6HDR, n - off, 0)
        plen = u16(d, off + 4)
        if plen > n - off - 40:
            return fail(f, E_V6PLEN, plen, n - off - 40)
        f.proto = d[off + 6]
        f.src_off = <int>(off + 8)
        f.dst_off = <int>(off + 24)
        l4 = off + 40
        end = l4 + plen
        hops = 0
        while (f.proto == PROTO_HOPOPTS or f.proto == PROTO_ROUTING or f.proto == PROTO_FRAGMENT
               or f.proto == PROTO_DSTOPTS):
            hops += 1
            if hops > MAX_V6_EXTENSIONS:
                return fail(f, U_V6EXT, 0, 0)
            if end - l4 < 8:
                return fail(f, E_V6EXT8, end - l4, 0)
            nxt = d[l4]
            if f.proto == PROTO_FRAGMENT:
                fo = u16(d, l4 + 2)
                f.frag_off = fo & 0xFFF8
                f.frag_more = fo & 1
                f.frag_id = u32(d, l4 + 4)
                hl = 8
            else:
                hl = (d[l4 + 1] + 1) * 8
                if end - l4 < hl:
                    return fail(f, E_V6EXTLEN, hl, end - l4)
            f.proto = nxt
            l4 += hl
        if f.frag_id >= 0 and f.frag_off == 0 and not f.frag_more:
            f.frag_id = -1
    f.l4_off = <int>l4
    f.l4_len = <int>(end - l4)
    if f.frag_id < 0:
        if f.proto == PROTO_UDP:
            if f.l4_len < 8:
                return fail(f, E_UDPHDR, f.l4_len, 0)
            ulen = u16(d, l4 + 4)
            if ulen < 8 or ulen > f.l4_len:
                return fail(f, E_UDPLEN, ulen, f.l4_len)
            f.sport = u16(d, l4)
            f.dport = u16(d, l4 + 2)
            f.payload_off = <int>(l4 + 8)
            f.payload_len = ulen - 8
        elif f.proto == PROTO_TCP:
            if f.l4_len < 20:
                return fail(f, E_TCPHDR, f.l4_len, 0)
            doff = (d[l4 + 12] >> 4) * 4
            if doff < 20 or doff > f.l4_len:
                return fail(f, E_TCPOFF, doff, f.l4_len)
            f.sport = u16(d, l4)
            f.dport = u16(d, l4 + 2)
            f.tcp_seq = u32(d, l4 + 4)
            f.tcp_flags = d[l4 + 13]
            f.payload_off = <int>(l4 + doff)
            f.payload_len = f.l4_len - doff
    return OK


cdef inline Py_ssize_t gre_inner(const unsigned char* d, Py_ssize_t p, Py_ssize_t left, FrameC* f,
                                 int* lt) noexcept nogil:
    """RFC 2784/2890 GRE at ``p``: where the frame it carries starts (its link type in ``lt``); 0 if
    it is not a mirror's; -1 on an error (in ``f``)."""
    cdef int flags, ptype, hl, ft
    if left < 4:
        fail(f, E_GRE, 4, left)
        return -1
    flags = u16(d, p)
    if flags & 0x4007:      # version 1 (PPTP) or source routing (RFC 1701): not a mirror
        return 0
    hl = 4 + (4 if flags & 0x8000 else 0) + (4 if flags & 0x2000 else 0) + (4 if flags & 0x1000 else 0)
    if left < hl:
        fail(f, E_GRE, hl, left)
        return -1
    ptype = u16(d, p + 2)
    p += hl
    left -= hl
    if ptype == GRE_TEB:
        lt[0] = LINKTYPE_ETHERNET
        return p
    if ptype == GRE_ERSPAN2:
        lt[0] = LINKTYPE_ETHERNET
        if not flags & 0x1000:      # type I: no sequence number, no ERSPAN header
            return p
        if left < 8:
            fail(f, E_ERSPAN, 8, left)
            return -1
        if d[p] >> 4 != 1:
            fail(f, U_ERSPAN, d[p] >> 4, 2)
            return -1
        return p + 8
    if ptype == GRE_ERSPAN3:
        if left < 12:
            fail(f, E_ERSPAN, 12, left)
            return -1
        if d[p] >> 4 != 2:
            fail(f, U_ERSPAN, d[p] >> 4, 3)
            return -1
        hl = 20 if d[p + 11] & 1 else 12    # O: an 8-byte platform-specific subheader follows
        if left < hl:
            fail(f, E_ERSPAN, hl, left)
            return -1
        ft = (d[p + 10] >> 2) & 0x1F
        if ft != 0 and ft != 2:
            fail(f, U_ERSPANFT, ft, 0)
            return -1
        lt[0] = LINKTYPE_ETHERNET if ft == 0 else LINKTYPE_RAW
        return p + hl
    if ptype == ETHERTYPE_IPV4 or ptype == ETHERTYPE_IPV6:
        lt[0] = LINKTYPE_RAW
        return p
    return 0

cdef inline Py_ssize_t tzsp_inner(const unsigned char* d, Py_ssize_t p, Py_ssize_t left, FrameC* f,
                                  int* lt) noexcept nogil:
    """TZSP at ``p`` (version 1, a packet): tagged fields up to END, then the frame; -1 on an error."""
    cdef int encap = u16(d, p + 2), tag
    cdef Py_ssize_t q = p + 4, end = p + left
    while True:
        if q >= end:
            fail(f, E_TZSP, left, 0)
            return -1
        tag = d[q]
        if tag == 1:
            q += 1
            break
        if tag == 0:
            q += 1
            continue
        if q + 2 > end or q + 2 + d[q + 1] > end:
            fail(f, E_TZSP, left, 0)
            return -1
        q += 2 + d[q + 1]
    if encap != 1:
        fail(f, U_TZSP, encap, 0)
        return -1
    lt[0] = LINKTYPE_ETHERNET
    return q

cdef inline Py_ssize_t tunnel_inner(const unsigned char* d, FrameC* f, int* lt) noexcept nogil:
    """Where the frame a remote mirror's tunnel carries starts (0: ``f`` is no tunnel; -1: error)."""
    if f.frag_id >= 0:
        return 0
    if f.proto == PROTO_GRE:
        return gre_inner(d, f.l4_off, f.l4_len, f, lt)
    if f.proto == PROTO_UDP:
        if f.dport == VXLAN_PORT and f.payload_len >= 8 and d[f.payload_off] & 0x08:   # I: a VNI follows
            lt[0] = LINKTYPE_ETHERNET
            return f.payload_off + 8
        if f.dport == TZSP_PORT and f.payload_len >= 4 and d[f.payload_off] == 1 and d[f.payload_off + 1] <= 1:
            return tzsp_inner(d, f.payload_off, f.payload_len, f, lt)
    return 0

cdef inline int parse_frame(const unsigned char* d, Py_ssize_t n, int linktype, FrameC* f) noexcept nogil:
    """A captured frame down to its UDP/TCP header; a remote mirror's (ERSPAN II/III, GRE TEB,
    VXLAN, TZSP) down to the inner frame's, up to MAX_TUNNELS deep. Offsets are into ``d``."""
    cdef Py_ssize_t base = 0, inner
    cdef int tunnels = 0, lt = linktype
    while True:
        if parse_one(d + base, n - base, lt, f) != OK:
            return f.err
        inner = tunnel_inner(d + base, f, &lt)
        if inner == 0:
            break
        if inner < 0:
            return f.err
        tunnels += 1
        if tunnels > MAX_TUNNELS:
            return fail(f, U_TUNNELS, 0, 0)
        base += inner
    f.inner_off = <int>base
    if base:
        f.ip_off += <int>base
        f.l4_off += <int>base
        f.src_off += <int>base
        f.dst_off += <int>base
        f.payload_off += <int>base
    return OK
