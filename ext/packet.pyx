# cython: language_level=3, boundscheck=False, wraparound=False
"""Frame parser (C): the twin of capture/wire/_packet_py.py, same signature and errors."""
from frame cimport *

from capture.errors import Truncated, Unsupported
from capture.wire.frame import Frame


# the numbers frame.pxd walks by, for the test that they are capture/wire/frame.py's
CONSTANTS = {"LINKTYPE_NULL": LINKTYPE_NULL, "LINKTYPE_ETHERNET": LINKTYPE_ETHERNET, "LINKTYPE_RAW_OLD": LINKTYPE_RAW_OLD,
             "LINKTYPE_RAW": LINKTYPE_RAW, "LINKTYPE_LINUX_SLL": LINKTYPE_LINUX_SLL, "LINKTYPE_IPV4": LINKTYPE_IPV4,
             "LINKTYPE_IPV6": LINKTYPE_IPV6, "LINKTYPE_LINUX_SLL2": LINKTYPE_LINUX_SLL2,
             "ETHERTYPE_IPV4": ETHERTYPE_IPV4, "ETHERTYPE_IPV6": ETHERTYPE_IPV6, "ETHERTYPE_VLAN": ETHERTYPE_VLAN,
             "ETHERTYPE_QINQ": ETHERTYPE_QINQ, "ETHERTYPE_VLAN_OLD": ETHERTYPE_VLAN_OLD,
             "PROTO_HOPOPTS": PROTO_HOPOPTS, "PROTO_ICMP": PROTO_ICMP, "PROTO_TCP": PROTO_TCP, "PROTO_UDP": PROTO_UDP,
             "PROTO_ROUTING": PROTO_ROUTING, "PROTO_FRAGMENT": PROTO_FRAGMENT, "PROTO_ICMPV6": PROTO_ICMPV6,
             "PROTO_DSTOPTS": PROTO_DSTOPTS, "MAX_VLAN_TAGS": MAX_VLAN_TAGS, "MAX_V6_EXTENSIONS": MAX_V6_EXTENSIONS,
             "PROTO_GRE": PROTO_GRE, "GRE_TEB": GRE_TEB, "GRE_ERSPAN2": GRE_ERSPAN2, "GRE_ERSPAN3": GRE_ERSPAN3,
             "VXLAN_PORT": VXLAN_PORT, "TZSP_PORT": TZSP_PORT, "MAX_TUNNELS": MAX_TUNNELS}


cdef object _error(FrameC* f, Py_ssize_t n, int linktype):
    cdef int c = f.err
    a, b = f.e1, f.e2
    if c == E_ETH:
        return Truncated(f"Ethernet header needs 14 bytes, frame has {a}")
    if c == E_SLL:
        return Truncated(f"Linux SLL header needs 16 bytes, frame has {a}")
    if c == E_SLL2:
        return Truncated(f"Linux SLL2 header needs 20 bytes, frame has {a}")
    if c == E_NULL:
        return Truncated(f"loopback header needs 4 bytes, frame has {a}")
    if c == U_NULLFAM:
        return Unsupported(f"loopback address family {a} is not IP")
    if c == U_LINK:
        return Unsupported(f"link type {a} is not supported")
    if c == U_VLAN:
        return Unsupported("more than 4 VLAN tags")
    if c == E_VLAN:
        return Truncated(f"VLAN tag needs 4 bytes at offset {a}, frame has {b}")
    if c == U_ETYPE:
        return Unsupported(f"ethertype 0x{a:04x} is not IP")
    if c == E_NOIP:
        return Truncated(f"no IP header at offset {a}, frame has {b} bytes")
    if c == U_IPVER:
        return Unsupported(f"IP version {a} where {b if b else '4 or 6'} was expected")
    if c == E_V4HDR:
        return Truncated(f"IPv4 header needs 20 bytes, {a} left")
    if c == E_IHL:
        return Truncated(f"IPv4 header length {a} is below 20")
    if c == E_TOTAL_LT:
        return Truncated(f"IPv4 total length {a} is below its header length {b}")
    if c == E_TOTAL_GT:
        return Truncated(f"IPv4 total length {a} exceeds the {b} bytes captured")
    if c == E_V6HDR:
        return Truncated(f"IPv6 header needs 40 bytes, {a} left")
    if c == E_V6PLEN:
        return Truncated(f"IPv6 payload length {a} exceeds the {b} bytes captured")
    if c == U_V6EXT:
        return Unsupported("more than 8 IPv6 extension headers")
    if c == E_V6EXT8:
        return Truncated(f"IPv6 extension header needs 8 bytes, {a} left")
    if c == E_V6EXTLEN:
        return Truncated(f"IPv6 extension header of {a} bytes, {b} left")
    if c == E_UDPHDR:
        return Truncated(f"UDP header needs 8 bytes, {a} left")
    if c == E_UDPLEN:
        return Truncated(f"UDP length {a} does not fit the {b} bytes of the datagram")
    if c == E_TCPHDR:
        return Truncated(f"TCP header needs 20 bytes, {a} left")
    if c == E_TCPOFF:
        return Truncated(f"TCP data offset {a} does not fit the {b} bytes of the segment")
    if c == E_GRE:
        return Truncated(f"GRE header of {a} bytes, {b} left")
    if c == E_ERSPAN:
        return Truncated(f"ERSPAN header of {a} bytes, {b} left")
    if c == U_ERSPAN:
        return Unsupported(f"ERSPAN version {a} in a type {b} header")
    if c == U_ERSPANFT:
        return Unsupported(f"ERSPAN type 3 frame type {a} is not Ethernet or IP")
    if c == E_TZSP:
        return Truncated(f"TZSP tags run past the {a} bytes of the datagram")
    if c == U_TZSP:
        return Unsupported(f"TZSP encapsulation {a} is not Ethernet")
    if c == U_TUNNELS:
        return Unsupported(f"more than {MAX_TUNNELS} nested tunnels")
    return Truncated(f"frame error {c}")


cdef object to_frame(const unsigned char* d, FrameC* f):
    cdef int alen = 4 if f.ip_version == 4 else 16
    return Frame(f.ip_version, d[f.src_off:f.src_off + alen], d[f.dst_off:f.dst_off + alen], f.proto,
                 f.ip_off, f.l4_off, f.l4_len, f.frag_id, f.frag_off, bool(f.frag_more), f.sport,
                 f.dport, f.payload_off, f.payload_len, f.tcp_seq, f.tcp_flags, f.inner_off)


def parse(data, int linktype):
    """Decode one captured frame down to its UDP/TCP header (see capture.wire.frame.Frame)."""
    cdef const unsigned char[:] mv = data
    cdef Py_ssize_t n = mv.shape[0]
    cdef FrameC f
    cdef const unsigned char* d = &mv[0] if n else <const unsigned char*>b""
    if parse_frame(d, n, linktype, &f) != OK:
        raise _error(&f, n, linktype)
    return to_frame(d, &f)
