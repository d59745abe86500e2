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
    MAX_VLAN_TAGS = 4
    MAX_V6_EXTENSIONS = 8

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

cdef inline bint is_unsupported(int err) noexcept nogil:
    return err == U_NULLFAM or err == U_LINK or err == U_VLAN or err == U_ETYPE or err == U_IPVER or err == U_V6EXT

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

cdef inline int parse_frame(const unsigned char* d, Py_ssize_t n, int linktype, FrameC* f) noexcept nogil:
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
