"""Who the SIP server answers: CUCM, nobody else. Anyone else gets no answer at all (no
amplification, no port taken, no dialog kept).

The allowlist is ``standby.sip_peers`` (``shadowrec run --sip-peer ADDR|NET``). With none
configured, shadowrec answers only the addresses it has seen on the SPAN port sending BiB
INVITEs (x-nearend/x-farend) to the primary recorder (its own address, or the VIP while the primary
holds it): CUCM's own nodes. That is logged, once per address learned; at most ``MAX_LEARNED``
are learned, and they are kept in ``path`` so that a restart during an outage still knows CUCM.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable

from capture.store.files import write_json_atomic

log = logging.getLogger("shadowrec.sip")
MAX_LEARNED = 64  # CUCM clusters have at most a few dozen call-processing nodes


class Peers:
    def __init__(self, configured: Iterable[str] = (), learn: bool = True, path: str | None = None):
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in configured)
        self.learn_from_span = learn and not self.networks
        self.path = path
        self.learned: set[str] = set()
        self.open = False  # answer anyone: the lab's simulated primary only
        if self.learn_from_span and path:
            try:
                saved = json.load(open(path))
                self.learned = {str(ipaddress.ip_address(a)) for a in saved[:MAX_LEARNED]}
            except (OSError, ValueError, TypeError):
                pass
        if self.learn_from_span:
            log.warning(
                "no SIP peers configured (standby.sip_peers): answering only the addresses seen sending "
                "BiB INVITEs to the primary on the SPAN port"
            )

    @classmethod
    def anyone(cls) -> Peers:
        p = cls(learn=False)
        p.open = True
        return p

    def allows(self, ip: str) -> bool:
        if self.open or ip in self.learned:
            return True
        if not self.networks:
            return False
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(a in n for n in self.networks)

    def learn(self, ip: str) -> bool:
        """``ip`` sent a BiB INVITE to the primary (seen on the SPAN port). True if newly learned."""
        if not self.learn_from_span or ip in self.learned:
            return False
        if len(self.learned) >= MAX_LEARNED:
            return False
        self.learned.add(ip)
        log.warning("SIP peer %s learned: it sent BiB INVITEs to the primary (seen on the SPAN port)", ip)
        if self.path:
            try:
                write_json_atomic(self.path, sorted(self.learned))
            except OSError as e:  # a full disk: learned all the same, until a restart
                log.warning("cannot keep the learned SIP peers in %s: %s", self.path, e)
        return True

    def status(self) -> dict:
        return {
            "configured": [str(n) for n in self.networks],
            "learned": sorted(self.learned),
            "mode": "anyone" if self.open else ("configured" if self.networks else "learned from the SPAN port"),
        }
