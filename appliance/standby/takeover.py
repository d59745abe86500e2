"""shadowrec as the primary recorders' standby: passive recording, VIP takeover, answering calls.

One standby guards one primary recorder, or several (``standby.primaries``): each its own
``Guard`` (VIP, VRRP instance, probe, SIP server), all over one capture. ``Standby.run()`` runs,
in one process:
- the capture worker on the SPAN port and on the VIP's (service) interface: in-progress calls
  keep recording whoever receives their RTP, and calls shadowrec answers itself are recorded
  by the same passive code, since its own 200 OK and the phones' RTP cross that interface;
- the VRRP runner (a thread) as keepalived's backup on the service interface;
- the health prober (a thread): SIP OPTIONS to the primary's own address; its verdicts are
  the VRRP instance's PRIMARY_DEAD / PRIMARY_ALIVE events (see appliance/standby/vrrp/state.py);
- the SIP server on the VIP (one asyncio loop in a thread, ``appliance/standby/sip/``), which only
  hears anything while the VIP is here, and answers only CUCM (``Peers``); a watchdog thread stops
  the whole standby if that server dies or freezes, so the supervisor restarts it.

Policy (documented in the README): keepalived on the primary host handles the host and its
network; shadowrec's probes also catch a dead recorder process on a live host (ICMP port
unreachable to OPTIONS: at once; silence: 3 probes of 200 ms). On DEAD shadowrec advertises
priority 254, the primary's keepalived steps down (it removes the VIP), and shadowrec claims
the VIP and announces it. On ALIVE (5 answers in a row) it advertises priority 0 and releases
the VIP; the primary takes it back after its Skew_Time. Two hosts never answer for the VIP
for longer than it takes keepalived to process one advertisement.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable

from appliance.config import StandbySettings
from appliance.standby.probe import Prober, Verdict
from appliance.standby.sip.peers import Peers
from appliance.standby.sip.server import SipServer, SocketPorts
from appliance.standby.sip.uas import Uas
from appliance.standby.vrrp.scheduler import VrrpRunner
from appliance.standby.vrrp.state import Event, VrrpConfig
from capture.live.worker import Worker
from capture.options import Options
from capture.sip.calls import Call, CallState
from capture.sip.calls import taken_over as taken_over_calls
from capture.wire.frame import flow_key

log = logging.getLogger("shadowrec")
SIP_WATCH_S = 1.0  # how often the SIP server's health is looked at
SIP_FROZEN_S = 5.0  # a loop that has not ticked for this long counts as dead


def raise_descriptor_limit() -> int:
    """The soft descriptor limit raised to the hard one (the unit sets LimitNOFILE): a master holds
    two sockets per answered dialog (RTP and RTCP ports)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except OSError as e:  # a syscall filter: the unit's LimitNOFILE is what there is
            log.warning("descriptor limit stays %d: %s", soft, e)
            return soft
    if hard < 4 * 5000:
        log.warning("descriptor limit %d: fewer than 5,000 answered calls fit (LimitNOFILE=65536)", hard)
    return hard


class Guard:
    """One primary recorder guarded: its VRRP instance (keepalived's backup for its VIP), its
    health probe, and the SIP server that answers on its VIP while the VIP is here."""

    def __init__(self, sb: StandbySettings, out_dir: str, answered: set, several: bool):
        vrrp = VrrpConfig(
            vrid=sb.vrid,
            priority=sb.priority,
            takeover_priority=sb.takeover_priority,
            advert_int_cs=round(sb.advert_int_s * 100),
            preempt=sb.preempt,
            fellows=frozenset(sb.fellows),
        )
        self.name = sb.name or sb.primary
        self.vrrp = VrrpRunner(vrrp, sb.service, sb.vips, sb.believed_peers())
        self.vip_ip, self.primary = sb.vips[0].split("/")[0], sb.primary
        learned = f"learned-sip-peers-{sb.vrid}.json" if several else "learned-sip-peers.json"
        self.peers = Peers(sb.sip_peers, path=os.path.join(out_dir, learned))
        self.ports = SocketPorts(self.vip_ip, sb.rtp_ports[0], sb.rtp_ports[1], rtcp=sb.hold_rtcp_ports)
        uas = Uas(self.vip_ip, self.ports, self.peers, max_call_s=sb.max_call_s)
        uas.answered = answered  # one set for every guard: the recordings say who answered
        self.sip = SipServer(uas, tcp_idle_s=sb.sip_tcp_idle_s, max_connections=sb.sip_max_connections)
        uas.master = False  # nothing reaches the VIP's sockets until the VIP is here
        self.vrrp.on_vip = self._vip
        self.prober = Prober(
            sb.primary, self._verdict, interval=sb.probe_interval_s, local=vrrp.local_ip, ifname=sb.service
        )
        self.thread = threading.Thread(target=self.vrrp.run, name=f"shadowrec-vrrp-{sb.vrid}", daemon=True)
        self.post_takeover: Callable[[], None] = lambda: None  # set by ``attach``

    def attach(self, worker: Worker) -> None:
        """The capture's call table answers which ports are busy and which dialogs live."""
        table = worker.rec.table  # read from the SIP thread: single lookups only
        vip_packed = ipaddress.ip_address(self.vip_ip).packed
        self.ports.busy = lambda port: flow_key(vip_packed, port) in table.media

        def live(call_id: str) -> bool:
            d = table.dialogs.get(call_id)
            return d is not None and d.call.state is not CallState.ENDED

        self.sip.uas.live = live
        vip_key = flow_key(vip_packed, 0)

        def taken_over() -> list[tuple[str, int]]:
            """The live calls with their media on this VIP (the wire's view; read from the SIP thread,
            so the table is copied first, and copied again if the capture changed it meanwhile)."""
            for _ in range(5):
                try:
                    media = list(table.media.items())
                    break
                except RuntimeError:  # changed size while copied
                    continue
            else:
                return []
            return [
                (d.call_id, key - vip_key)
                for key, d in media
                if 0 <= key - vip_key < 65536 and d.call.state is not CallState.ENDED
            ]

        self.sip.uas.taken_over = taken_over
        answered = self.sip.uas.answered
        self.post_takeover = lambda: worker.rec.posted.put(
            lambda now: taken_over_calls(table, vip_packed, now, f"{self.name}: its VIP taken over here", answered)
        )

    def learn(self, call: Call) -> None:
        """A BiB call seen starting (capture thread): its INVITE's sender is CUCM if it went to this
        primary recorder: its own address, or the VIP while the primary holds it (while shadowrec
        holds it, an INVITE to the VIP is sent to shadowrec and teaches nothing)."""
        to = call.primary_address
        if call.signalled_from and (to == self.primary or (to == self.vip_ip and not self.sip.uas.master)):
            self.peers.learn(call.signalled_from)

    def _vip(self, held: bool) -> None:
        """The VRRP thread claimed or released the VIP: the UAS is told in its own thread, and the
        capture thread marks the calls in progress on the VIP (their recorder failed: evidence)."""
        if held:
            self.post_takeover()
        uas = self.sip.uas
        self.sip.call(uas.claim if held else (lambda: uas.release(self.sip.clock())))

    def _verdict(self, v: Verdict):
        self.vrrp.post(Event.PRIMARY_DEAD if v is Verdict.DEAD else Event.PRIMARY_ALIVE)

    def status(self) -> dict:
        return {
            "name": self.name,
            "primary": self.primary,
            "vrrp": self.vrrp.status(),
            "health": self.prober.policy.verdict.value,
            "sip": self.sip.status(),
        }

    def start(self) -> None:
        self.sip.start()
        self.thread.start()
        self.prober.start()

    def stop(self) -> None:
        self.prober.close()
        self.vrrp.post(Event.SHUTDOWN)
        self.thread.join(3)
        self.sip.close()


class Standby:
    """Every guarded primary (``Guard``) over one capture worker on the SPAN port and the service
    interfaces."""

    def __init__(self, span: str, opts: Options, sb: StandbySettings, ring_mb: int = 256):
        self.limit = raise_descriptor_limit()
        answered: set = set()
        settings = sb.guards()
        self.guards = [Guard(g, opts.out_dir, answered, len(settings) > 1) for g in settings]
        services = list(dict.fromkeys(g.service for g in settings))
        self.worker = Worker([span, *services], opts, ring_mb=ring_mb, answered=answered)
        for g in self.guards:
            g.attach(self.worker)
            g.sip.on_death = self._sip_died
        self.worker.rec.on_call_started = self._learn
        self.worker.extra_status = self.status_of_standby
        self.failure: str | None = None

    @property
    def vrrp(self) -> VrrpRunner:  # the first primary's (one primary: the only one)
        return self.guards[0].vrrp

    @property
    def sip(self) -> SipServer:
        return self.guards[0].sip

    def _learn(self, call: Call) -> None:
        for g in self.guards:
            g.learn(call)

    def _sip_died(self, why: str) -> None:
        self._fail(f"SIP server stopped: {why}")  # the same words as the watchdog's

    def _fail(self, why: str) -> None:
        """A SIP server cannot answer: stop, so the supervisor starts a whole new standby (a VIP
        held by a standby that cannot answer loses every new call while VRRP says all is well)."""
        if self.failure is None:
            self.failure = why
            log.error("%s: the standby stops so that it is restarted", why)
        self.worker.stop = True

    def _watch(self) -> None:
        while not self.worker.stop:
            for g in self.guards:
                problem = g.sip.alive(SIP_FROZEN_S)
                if problem:
                    self._fail(problem)
                    return
            time.sleep(SIP_WATCH_S)

    def status_of_standby(self) -> dict:
        """The first primary's VRRP, health and SIP at the top (one primary: all there is), and
        with several, each in ``primaries``."""
        first = self.guards[0].status()
        out = {"vrrp": first["vrrp"], "health": first["health"], "sip": first["sip"], "descriptor_limit": self.limit}
        if len(self.guards) > 1:
            out["primaries"] = [first] + [g.status() for g in self.guards[1:]]
        return out

    def status(self) -> dict:
        return {**self.status_of_standby(), "capture": self.worker.counters()}

    def run(self, max_seconds: float | None = None) -> dict:
        def stop(*_):
            self.worker.stop = True

        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        for g in self.guards:
            g.start()
        watch = threading.Thread(target=self._watch, name="shadowrec-sip-watch", daemon=True)
        watch.start()
        try:
            summary = self.worker.run(max_seconds)
        finally:
            for g in self.guards:
                g.stop()
            for s, h in old.items():
                signal.signal(s, h)
        summary["vrrp"] = self.vrrp.status()
        summary["sip"] = self.sip.status()
        if len(self.guards) > 1:
            summary["primaries"] = [g.status() for g in self.guards]
        if self.failure:
            summary["error"] = self.failure
        return summary
