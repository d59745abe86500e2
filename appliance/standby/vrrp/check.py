"""Which advertisements are believed: checked before they touch the state machine (no I/O).

VRRPv3 has no authentication, so shadowrec trusts an advertisement only when
- it came with TTL 255 (RFC 5798 §5.1.1.3: it was not routed here) and parses (version,
  type, checksum: ``packet.parse``);
- its VRID is ours (others on the LAN are ignored, not counted as bad);
- its source is one of the configured peers (``standby.vrrp_peers``: by default the primary
  host's own address), and lies on one of the service interface's own subnets;
- its address list is exactly the configured IPv4 VIPs.
Anything else is dropped and counted by reason (``AdvertRejected.reason``). The interval an
accepted advert announces is bounded in the state machine (``VrrpInstance.bounded_interval``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.standby.vrrp import packet


class AdvertRejected(packet.VrrpError):
    """A well-formed advertisement shadowrec does not believe."""

    def __init__(self, reason: str, text: str):
        super().__init__(text)
        self.reason = reason


class OtherRouter(Exception):
    """An advertisement for another VRID: someone else's, ignored."""


@dataclass(frozen=True)
class Trust:
    vrid: int
    peers: frozenset
    subnets: tuple  # the service interface's IPv4 networks
    vips: frozenset  # the configured IPv4 VIPs, as strings

    @classmethod
    def of(cls, vrid: int, peers: Iterable[str], subnets: Iterable[str], vips: Iterable[str]) -> Trust:
        nets = tuple(ipaddress.ip_network(n, strict=False) for n in subnets)
        four = frozenset(str(ipaddress.ip_interface(v).ip) for v in vips if ipaddress.ip_interface(v).version == 4)
        return cls(vrid, frozenset(str(ipaddress.ip_address(p)) for p in peers), nets, four)


def check(data: bytes, src: str, dst: str, ttl: int, trust: Trust) -> packet.Advert:
    """The advertisement in ``data`` (the IP payload), if it is to be believed; else raises
    ``ParseError`` (malformed), ``AdvertRejected`` (foreign) or ``OtherRouter``."""
    if ttl != 255:
        raise AdvertRejected("ttl", f"TTL {ttl} from {src}, RFC 5798 requires 255")
    adv = packet.parse(data, src, dst)
    if adv.vrid != trust.vrid:
        raise OtherRouter(adv.vrid)
    if src not in trust.peers:
        raise AdvertRejected("not_peer", f"advert from {src}, not a configured VRRP peer")
    a = ipaddress.ip_address(src)
    if not any(a in n for n in trust.subnets):
        raise AdvertRejected("off_subnet", f"advert from {src}, off the service interface's subnets")
    if frozenset(adv.addresses) != trust.vips:
        raise AdvertRejected(
            "addresses", f"advert from {src} lists {', '.join(adv.addresses) or 'no address'}, not the VIP"
        )
    return adv
