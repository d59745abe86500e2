"""VRRPv3 advertisements (RFC 5798 §5) over IPv4: ``parse(data, src, dst) -> Advert`` and ``build``.

The checksum covers the VRRP message and the IPv4 pseudo-header (RFC 5798 §5.2.8), which
keepalived checks; a message with a bad one is rejected with a clear error.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from capture.errors import ParseError, Truncated
from capture.wire.inet import checksum

VRRP_PROTO = 112
VRRP_GROUP = "224.0.0.18"
VERSION = 3
TYPE_ADVERTISEMENT = 1


class VrrpError(ParseError):
    """A malformed or foreign VRRP message."""


@dataclass(frozen=True)
class Advert:
    vrid: int
    priority: int
    max_adver_int_cs: int  # centiseconds (12 bits)
    addresses: tuple  # IPv4 address strings


def _pseudo(src: str, dst: str, length: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!BBH", 0, VRRP_PROTO, length)
    )


def build(adv: Advert, src: str, dst: str = VRRP_GROUP) -> bytes:
    """The VRRP message (the IP payload) with its checksum for source ``src``."""
    if not 1 <= adv.vrid <= 255 or not 0 <= adv.priority <= 255 or not 0 < adv.max_adver_int_cs < 4096:
        raise ValueError(f"bad advertisement fields {adv}")
    body = struct.pack(
        "!BBBBHH",
        (VERSION << 4) | TYPE_ADVERTISEMENT,
        adv.vrid,
        adv.priority,
        len(adv.addresses),
        adv.max_adver_int_cs & 0x0FFF,
        0,
    )
    body += b"".join(ipaddress.IPv4Address(a).packed for a in adv.addresses)
    c = checksum(_pseudo(src, dst, len(body)) + body)
    return body[:6] + struct.pack("!H", c) + body[8:]


def parse(data: bytes, src: str, dst: str = VRRP_GROUP) -> Advert:
    """Parse the VRRP message carried by an IPv4 packet from ``src`` to ``dst``."""
    if len(data) < 8:
        raise Truncated(f"VRRP message needs 8 bytes, got {len(data)}")
    vt, vrid, prio, count, maxi, _c = struct.unpack_from("!BBBBHH", data)
    if vt >> 4 != VERSION:
        raise VrrpError(f"VRRP version {vt >> 4}, expected 3")
    if vt & 0x0F != TYPE_ADVERTISEMENT:
        raise VrrpError(f"VRRP type {vt & 0x0F}, expected 1 (advertisement)")
    if len(data) < 8 + 4 * count:
        raise Truncated(f"VRRP message lists {count} addresses in {len(data) - 8} bytes")
    body = bytes(data[: 8 + 4 * count])
    if checksum(_pseudo(src, dst, len(body)) + body) != 0:
        raise VrrpError(f"bad VRRP checksum from {src}")
    addrs = tuple(str(ipaddress.IPv4Address(body[8 + 4 * i : 12 + 4 * i])) for i in range(count))
    if vrid == 0:
        raise VrrpError("VRID 0 is not valid")
    if maxi & 0x0FFF == 0:  # found by fuzzing: a down timer of 3 x 0 plus skew, and build() refused it
        raise VrrpError("max advertisement interval 0 is not valid")
    return Advert(vrid, prio, maxi & 0x0FFF, addrs)
