"""Running a VRRP instance: the raw protocol-112 socket, the one deadline, and the actions.

``VrrpRunner.run()`` waits on the socket until the instance's deadline, feeds what
arrives (``Event.ADVERT``) or the timer (``Event.TIMER``) to ``VrrpInstance.handle`` and
carries out the actions it returns. Health verdicts come from other threads through
``post(Event.PRIMARY_DEAD | Event.PRIMARY_ALIVE)``.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import struct
import time

from appliance.standby.vrrp import arp, packet
from appliance.standby.vrrp.state import ClaimVip, Event, Received, ReleaseVip, SendAdvert, VrrpConfig, VrrpInstance
from appliance.standby.vrrp.vip import VipManager
from capture.errors import ParseError

log = logging.getLogger("shadowrec.vrrp")
SO_BINDTODEVICE = 25


class VrrpRunner:
    def __init__(self, cfg: VrrpConfig, ifname: str, vips: list, clock=time.monotonic_ns):
        self.ifname = ifname
        self.vip = VipManager(ifname, vips)
        if cfg.local_ip in ("", "0.0.0.0"):
            cfg.local_ip = self.vip.primary_ipv4()
        self.inst = VrrpInstance(cfg)
        self.clock = clock
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.stop = False
        self.counters = {"adverts_sent": 0, "adverts_received": 0, "bad_adverts": 0, "claims": 0, "releases": 0}
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
            "vips_present": self.vip.present(),
            **self.counters,
        }

    def _do(self, actions) -> None:
        for a in actions:
            if isinstance(a, SendAdvert):
                adv = packet.Advert(
                    self.inst.cfg.vrid,
                    a.priority,
                    self.inst.cfg.advert_int_cs,
                    tuple(str(v.ip) for v in self.vip.vips if v.version == 4),
                )
                self.sock.sendto(packet.build(adv, self.inst.cfg.local_ip), (packet.VRRP_GROUP, 0))
                self.counters["adverts_sent"] += 1
            elif isinstance(a, ClaimVip):
                self.vip.claim()
                arp.announce(self.ifname, [str(v) for v in self.vip.vips])
                self.counters["claims"] += 1
                self.claimed_at = time.time()
                log.warning("VRRP %s: MASTER, VIP claimed", self.ifname)
            elif isinstance(a, ReleaseVip):
                self.vip.release()
                self.counters["releases"] += 1
                log.warning("VRRP %s: VIP released", self.ifname)

    def _receive(self, now) -> None:
        data, (src, _port) = self.sock.recvfrom(2048)
        if len(data) < 20 or src == self.inst.cfg.local_ip:
            return
        ihl = (data[0] & 0x0F) * 4
        ttl, dst = data[8], socket.inet_ntoa(data[16:20])
        try:
            if ttl != 255:
                raise packet.VrrpError(f"TTL {ttl} from {src}, RFC 5798 requires 255")
            adv = packet.parse(data[ihl:], src, dst)
        except ParseError as e:
            self.counters["bad_adverts"] += 1
            log.info("ignored VRRP message: %s", e)
            return
        if adv.vrid != self.inst.cfg.vrid:
            return
        self.counters["adverts_received"] += 1
        self._do(self.inst.handle(Event.ADVERT, now, Received(src, adv.priority, adv.max_adver_int_cs)))

    def run(self) -> None:
        self.vip.release()  # never start holding a stale VIP (our own crash)
        self._do(self.inst.handle(Event.STARTUP, self.clock()))
        try:
            while not self.stop:
                now = self.clock()
                dl = self.inst.deadline
                timeout = None if dl is None else max(0.0, (dl - now) / 1e9)
                r, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [], timeout)
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
            self.sock.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
