"""Running a VRRP instance: the raw protocol-112 socket, the one deadline, and the actions.

``VrrpRunner.run()`` waits on the socket until the instance's deadline, feeds what arrives
(``Event.ADVERT``, once ``check.check`` believes it) or the timer (``Event.TIMER``) to
``VrrpInstance.handle`` and carries out the actions it returns. Health verdicts come from other
threads through ``post(Event.PRIMARY_DEAD | Event.PRIMARY_ALIVE)``. Adverts not believed are
counted by reason (``adverts_rejected``); nothing received can stop the loop.
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable

from appliance.standby.vrrp import arp, check, packet
from appliance.standby.vrrp.state import (
    ClaimVip,
    Event,
    Received,
    ReleaseVip,
    SendAdvert,
    VrrpConfig,
    VrrpInstance,
    VrrpState,
)
from appliance.standby.vrrp.vip import VipManager
from capture.errors import ParseError

log = logging.getLogger("shadowrec.vrrp")
SO_BINDTODEVICE = 25


class VrrpRunner:
    def __init__(self, cfg: VrrpConfig, ifname: str, vips: list, peers: list[str], clock=time.monotonic_ns):
        self.ifname = ifname
        self.vip = VipManager(ifname, vips)
        if cfg.local_ip in ("", "0.0.0.0"):
            cfg.local_ip = self.vip.primary_ipv4()
        if not peers:
            from capture.errors import ConfigError

            raise ConfigError("VRRP needs the peers whose adverts it believes (the primary's own address)")
        self.trust = check.Trust.of(cfg.vrid, peers, self.vip.subnets(), vips)
        self.inst = VrrpInstance(cfg)
        self.clock = clock
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stop = False
        self.counters = {"adverts_sent": 0, "adverts_received": 0, "bad_adverts": 0, "claims": 0, "releases": 0}
        self.rejected: Counter[str] = Counter()  # adverts not believed, by reason
        self.on_vip: Callable[[bool], None] | None = None  # told True on a claim, False on a release
        self.action_errors: Counter[str] = Counter()
        self.claim_pending = False
        self.claimed_at: float | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, packet.VRRP_PROTO)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        ifindex = socket.if_nametoindex(ifname)
        mreqn = socket.inet_aton(packet.VRRP_GROUP) + socket.inet_aton(cfg.local_ip) + struct.pack("i", ifindex)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(cfg.local_ip))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        self.wake_r, self.wake_w = os.pipe()

    def post(self, event: Event) -> None:
        """From any thread: a health verdict (or SHUTDOWN)."""
        self.events.put(event)
        os.write(self.wake_w, b"x")

    def status(self) -> dict:
        i = self.inst
        return {
            "state": i.state.value,
            "priority": i.priority,
            "master_ip": i.master_ip,
            "primary_dead": i.primary_dead,
            "vips": [str(v) for v in self.vip.vips],
            "vips_present": self._present(),
            "peers": sorted(self.trust.peers),
            **self.counters,
            "adverts_rejected": dict(self.rejected),
            "action_errors": dict(self.action_errors),
            "conflicts": i.conflicts,
            "last_conflict": i.last_conflict,
        }

    def _present(self) -> list | None:
        try:
            return self.vip.present()
        except Exception as e:  # netlink out of descriptors or busy: the status says so, nothing stops
            log.warning("VRRP %s: cannot list the VIPs present: %s", self.ifname, e)
            return None

    def _do(self, actions) -> None:
        """Carry out the instance's actions. A failure (the link down, netlink busy) is counted and
        logged, never raised: a claim that failed is tried again with each advert sent as master."""
        for a in actions:
            try:
                self._act(a)
            except Exception as e:
                self.action_errors[f"{type(a).__name__}.{type(e).__name__}"] += 1
                log.error("VRRP %s: %s failed: %s", self.ifname, type(a).__name__, e)
                if isinstance(a, ClaimVip):
                    self.claim_pending = True

    def _act(self, a) -> None:
        if isinstance(a, SendAdvert):
            adv = packet.Advert(
                self.inst.cfg.vrid,
                a.priority,
                self.inst.cfg.advert_int_cs,
                tuple(str(v.ip) for v in self.vip.vips if v.version == 4),
            )
            self.sock.sendto(packet.build(adv, self.inst.cfg.local_ip), (packet.VRRP_GROUP, 0))
            self.counters["adverts_sent"] += 1
            if self.claim_pending and self.inst.state is VrrpState.MASTER:
                self._act(ClaimVip())
        elif isinstance(a, ClaimVip):
            self.claim_pending = False
            self.vip.claim()
            arp.announce(self.ifname, [str(v) for v in self.vip.vips])
            self.counters["claims"] += 1
            self.claimed_at = time.time()
            log.warning("VRRP %s: MASTER, VIP claimed", self.ifname)
            if self.on_vip is not None:
                self.on_vip(True)
        elif isinstance(a, ReleaseVip):
            self.claim_pending = False
            if self.on_vip is not None:
                self.on_vip(False)
            self.vip.release()
            self.counters["releases"] += 1
            log.warning("VRRP %s: VIP released", self.ifname)

    def _receive(self, now) -> None:
        try:
            data, (src, _port) = self.sock.recvfrom(2048)
        except OSError as e:
            self.rejected[f"socket.{type(e).__name__}"] += 1
            return
        if len(data) < 20 or src == self.inst.cfg.local_ip:
            return
        ihl = (data[0] & 0x0F) * 4
        ttl, dst = data[8], socket.inet_ntoa(data[16:20])
        try:
            adv = check.check(data[ihl:], src, dst, ttl, self.trust)
        except check.OtherRouter:
            return
        except ParseError as e:
            reason = e.reason if isinstance(e, check.AdvertRejected) else type(e).__name__
            self.counters["bad_adverts"] += 1
            self.rejected[reason] += 1
            if self.rejected[reason] <= 10 or self.rejected[reason] % 1000 == 0:
                log.warning("ignored VRRP advert (%s, %d so far): %s", reason, self.rejected[reason], e)
            return
        except Exception as e:  # a fault of ours: counted, the instance untouched
            self.rejected[f"unhandled.{type(e).__name__}"] += 1
            log.exception("VRRP advert from %s", src)
            return
        self.counters["adverts_received"] += 1
        self._do(self.inst.handle(Event.ADVERT, now, Received(src, adv.priority, adv.max_adver_int_cs)))

    def run(self) -> None:
        self.vip.release()  # never start holding a stale VIP (our own crash)
        self._do(self.inst.handle(Event.STARTUP, self.clock()))
        sel = selectors.DefaultSelector()  # epoll: any descriptor number (the SIP server holds thousands)
        sel.register(self.sock.fileno(), selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        try:
            while not self.stop:
                now = self.clock()
                dl = self.inst.deadline
                timeout = None if dl is None else max(0.0, (dl - now) / 1e9)
                r = [k.fd for k, _ in sel.select(timeout)]
                now = self.clock()
                if self.wake_r in r:
                    os.read(self.wake_r, 4096)
                    while not self.events.empty():
                        ev = self.events.get()
                        if ev is Event.SHUTDOWN:
                            self.stop = True
                        self._do(self.inst.handle(ev, now))
                if self.sock.fileno() in r:
                    self._receive(now)
                if self.inst.deadline is not None and self.clock() >= self.inst.deadline:
                    self._do(self.inst.handle(Event.TIMER, self.clock()))
        finally:
            if not self.stop:
                self._do(self.inst.handle(Event.SHUTDOWN, self.clock()))
            sel.close()
            self.sock.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
