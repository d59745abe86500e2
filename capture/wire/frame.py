"""Frames: the record both frame parsers (ext/packet.pyx and capture/wire/_packet_py.py) return,
the link, ethertype and IP protocol numbers they walk by (ext/frame.pxd has the same, checked by
tests/test_packet.py), and the flow key of an (address, port)."""

from __future__ import annotations

import functools
import socket
from typing import NamedTuple

# Link types (tcpdump.org/linktypes.html) that shadowrec reads.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD = 12
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_OLD,
        LINKTYPE_RAW,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # 802.1Q
ETHERTYPE_QINQ = 0x88A8  # 802.1ad
ETHERTYPE_VLAN_OLD = 0x9100  # pre-standard QinQ

PROTO_HOPOPTS = 0  # IPv6 extension headers ...
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ICMPV6 = 58
PROTO_DSTOPTS = 60
PROTO_GRE = 47
IPV6_EXTENSIONS = (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT, PROTO_DSTOPTS)

MAX_VLAN_TAGS = 4
MAX_V6_EXTENSIONS = 8

# Remote mirrors: the tunnels whose inner frame is walked instead of the outer one.
GRE_TEB = 0x6558  # GRE transparent Ethernet bridging (Linux gretap)
GRE_ERSPAN2 = 0x88BE  # ERSPAN type II (type I: the same protocol, no sequence number, no header)
GRE_ERSPAN3 = 0x22EB  # ERSPAN type III
VXLAN_PORT = 4789  # RFC 7348
TZSP_PORT = 37008  # TaZmen Sniffer Protocol (MikroTik)
MAX_TUNNELS = 2  # tunnels inside tunnels walked


class Frame(NamedTuple):
    """One captured frame, decoded down to its transport header.

    Offsets are into the captured frame. A remote mirror's frame (ERSPAN, GRE TEB, VXLAN, TZSP)
    is walked to the frame it carries: every field is the inner frame's, and ``inner_off`` is
    where that frame starts (0: not encapsulated).

    ``frag_id`` is -1 for a whole datagram; for an IP fragment it is the IP identification
    and ``l4_off``/``l4_len`` delimit the fragment's data (``frag_off`` bytes into the
    datagram, ``frag_more`` set on all but the last). ``payload_off``/``payload_len`` are the
    UDP or TCP payload of a whole datagram (0/0 otherwise). ``tcp_flags`` is -1 for non-TCP.
    """

    ip_version: int
    src: bytes
    dst: bytes
    proto: int
    ip_off: int
    l4_off: int
    l4_len: int
    frag_id: int
    frag_off: int
    frag_more: bool
    sport: int
    dport: int
    payload_off: int
    payload_len: int
    tcp_seq: int
    tcp_flags: int
    inner_off: int = 0


def flow_key(addr: bytes, port: int) -> int:
    """The integer key of an (address, port) pair used by the RTP flow table.

    IPv4 keys are below 2**48; IPv6 keys have bit 160 set so the two families never meet.
    """
    k = (int.from_bytes(addr, "big") << 16) | port
    return k if len(addr) == 4 else k | (1 << 160)


def key_to_str(key: int) -> str:
    """Render a flow key as ``addr:port`` (``[addr]:port`` for IPv6)."""
    port = key & 0xFFFF
    if key >> 160:
        import ipaddress

        return f"[{ipaddress.IPv6Address((key >> 16) & ((1 << 128) - 1))}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, (key >> 16).to_bytes(4, 'big'))}:{port}"


@functools.lru_cache(maxsize=4096)
def ntop(addr: bytes) -> str:
    """A packed address as text (the SIP endpoints: a few addresses, each seen many times)."""
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)
