"""The virtual IP on this host, through pyroute2: claim and release, both idempotent.

A host that crashed while master may come back with the VIP still configured (see
shared/notes/failover-facts.md). shadowrec therefore releases the VIP at startup, before it
takes part in VRRP, and claiming an address that is already there is not an error.
"""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger("shadowrec.vrrp")


class VipManager:
    def __init__(self, ifname: str, vips: list):
        self.ifname = ifname
        self.vips = [ipaddress.ip_interface(v) for v in vips]  # "198.18.0.20/24"

    def _ipr(self):
        from pyroute2 import IPRoute

        return IPRoute()

    def _index(self, ipr) -> int:
        idx = ipr.link_lookup(ifname=self.ifname)
        if not idx:
            from capture.errors import ConfigError

            raise ConfigError(f"no interface named {self.ifname}")
        return idx[0]

    def present(self) -> list:
        with self._ipr() as ipr:
            idx = self._index(ipr)
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx)}
        return [str(v) for v in self.vips if str(v.ip) in have]

    def claim(self) -> list:
        """Add every VIP that is missing; returns those added."""
        added = []
        with self._ipr() as ipr:
            idx = self._index(ipr)
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx)}
            for v in self.vips:
                if str(v.ip) not in have:
                    ipr.addr("add", index=idx, address=str(v.ip), prefixlen=v.network.prefixlen)
                    added.append(str(v))
        if added:
            log.info("claimed %s on %s", ", ".join(added), self.ifname)
        return added

    def release(self) -> list:
        """Remove every VIP that is present; returns those removed."""
        removed = []
        with self._ipr() as ipr:
            idx = self._index(ipr)
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx)}
            for v in self.vips:
                if str(v.ip) in have:
                    ipr.addr("del", index=idx, address=str(v.ip), prefixlen=v.network.prefixlen)
                    removed.append(str(v))
        if removed:
            log.info("released %s on %s", ", ".join(removed), self.ifname)
        return removed

    def subnets(self) -> list[str]:
        """The IPv4 networks of the interface's own (non-VIP) addresses: where VRRP peers live."""
        vip_ips = {str(v.ip) for v in self.vips}
        with self._ipr() as ipr:
            idx = self._index(ipr)
            return [
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=idx, family=2)
                if a.get_attr("IFA_ADDRESS") not in vip_ips
            ]

    def primary_ipv4(self) -> str:
        """The interface's own (non-VIP) IPv4 address: the source of advertisements."""
        vip_ips = {str(v.ip) for v in self.vips}
        with self._ipr() as ipr:
            idx = self._index(ipr)
            for a in ipr.get_addr(index=idx, family=2):
                ip = a.get_attr("IFA_ADDRESS")
                if ip not in vip_ips:
                    return ip
        from capture.errors import ConfigError

        raise ConfigError(f"{self.ifname} has no IPv4 address of its own to advertise from")
