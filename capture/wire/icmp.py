"""What the wire says about the primary recorder: ICMP errors quoting traffic sent to it."""

from __future__ import annotations

from dataclasses import dataclass

from capture.errors import Truncated

# (ICMP version, type, code) -> evidence kind
KINDS = {
    (4, 3, 3): "icmp_port_unreachable",
    (4, 3, 1): "icmp_host_unreachable",
    (4, 3, 0): "icmp_net_unreachable",
    (4, 3, 13): "icmp_admin_prohibited",
    (6, 1, 4): "icmp_port_unreachable",
    (6, 1, 3): "icmp_host_unreachable",
    (6, 1, 0): "icmp_net_unreachable",
    (6, 1, 1): "icmp_admin_prohibited",
}


@dataclass(frozen=True)
class IcmpError:
    kind: str
    quoted_src: bytes
    quoted_dst: bytes
    quoted_proto: int
    quoted_sport: int
    quoted_dport: int


def parse(version: int, data: bytes):
    """Parse an ICMP/ICMPv6 message; an IcmpError for destination-unreachable, else None."""
    if len(data) < 8:
        raise Truncated(f"ICMP header needs 8 bytes, got {len(data)}")
    kind = KINDS.get((version, data[0], data[1]))
    if kind is None:
        return None
    q = data[8:]
    if version == 4:
        if len(q) < 20 or q[0] >> 4 != 4:
            raise Truncated(f"ICMP error quotes {len(q)} bytes, not an IPv4 header")
        ihl = (q[0] & 0x0F) * 4
        if ihl < 20 or len(q) < ihl + 4:
            raise Truncated(f"ICMP error quotes {len(q)} bytes, too few for ports")
        proto, src, dst, l4 = q[9], bytes(q[12:16]), bytes(q[16:20]), ihl
    else:
        if len(q) < 44 or q[0] >> 4 != 6:
            raise Truncated(f"ICMPv6 error quotes {len(q)} bytes, not an IPv6 header with ports")
        proto, src, dst, l4 = q[6], bytes(q[8:24]), bytes(q[24:40]), 40
    sport = (q[l4] << 8) | q[l4 + 1]
    dport = (q[l4 + 2] << 8) | q[l4 + 3]
    return IcmpError(kind, src, dst, proto, sport, dport)
