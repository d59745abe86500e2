"""Announcing the VIP: gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6)."""

from __future__ import annotations

import ipaddress
import socket
import struct

from capture.wire.frame import PROTO_ICMPV6
from capture.wire.inet import checksum as _csum

BROADCAST = b"\xff" * 6


def _mac(ifname: str) -> bytes:
    with open(f"/sys/class/net/{ifname}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def gratuitous_arp(ifname: str, ip: str) -> bytes:
    """An ARP request for ``ip`` from ``ip`` (sender = target), broadcast: updates neighbours' caches."""
    mac = _mac(ifname)
    a = ipaddress.IPv4Address(ip).packed
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, a, b"\0" * 6, a)
    return BROADCAST + mac + b"\x08\x06" + arp


def unsolicited_na(ifname: str, ip: str) -> bytes:
    """An ICMPv6 neighbour advertisement for ``ip`` to all nodes, override flag set (RFC 4861 §7.2.6)."""
    mac = _mac(ifname)
    src = ipaddress.IPv6Address(ip).packed
    dst = ipaddress.IPv6Address("ff02::1").packed
    icmp = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, src, 2, 1, mac)
    pseudo = src + dst + struct.pack("!IxxxB", len(icmp), PROTO_ICMPV6)
    icmp = icmp[:2] + struct.pack("!H", _csum(pseudo + icmp)) + icmp[4:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), PROTO_ICMPV6, 255, src, dst)
    return b"\x33\x33\x00\x00\x00\x01" + mac + b"\x86\xdd" + ip6 + icmp


def announce(ifname: str, ips: list, repeat: int = 3) -> int:
    """Send the announcement for every address ``repeat`` times; returns frames sent."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    n = 0
    try:
        for _ in range(repeat):
            for ip in ips:
                addr = ipaddress.ip_address(ip.split("/")[0])
                frame = gratuitous_arp(ifname, str(addr)) if addr.version == 4 else unsolicited_na(ifname, str(addr))
                s.send(frame)
                n += 1
    finally:
        s.close()
    return n
