"""shadowrec as the primary recorder's standby: passive recording, VIP takeover, answering calls.

``Standby.run()`` runs, in one process:
- the capture worker on the SPAN port and on the VIP's (service) interface: in-progress calls
  keep recording whoever receives their RTP, and calls shadowrec answers itself are recorded
  by the same passive code, since its own 200 OK and the phones' RTP cross that interface;
- the VRRP runner (a thread) as keepalived's backup on the service interface;
- the health prober (a thread): SIP OPTIONS to the primary's own address; its verdicts are
  the VRRP instance's PRIMARY_DEAD / PRIMARY_ALIVE events (see appliance/standby/vrrp/state.py);
- the SIP UAS on the VIP (a thread), which only hears anything while the VIP is here.

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
import signal
import threading

from appliance.standby.probe import Prober, Verdict
from appliance.standby.sipserver import SipServer
from appliance.standby.vrrp.scheduler import VrrpRunner
from appliance.standby.vrrp.state import Event, VrrpConfig
from capture.live.worker import Worker
from capture.options import Options
from capture.wire.frame import flow_key

log = logging.getLogger("shadowrec")


class Standby:
    def __init__(
        self,
        span: str,
        service: str,
        opts: Options,
        vrrp: VrrpConfig,
        vips: list,
        primary: str,
        probe_interval: float = 0.2,
        ring_mb: int = 256,
    ):
        self.vrrp = VrrpRunner(vrrp, service, vips)
        vip_ip = vips[0].split("/")[0]
        self.sip = SipServer(vip_ip)
        self.worker = Worker([span, service], opts, ring_mb=ring_mb, answered=self.sip.uas.answered)
        vip_packed = ipaddress.ip_address(vip_ip).packed
        media = self.worker.rec.table.media  # read from the SIP thread: membership tests only
        self.sip.uas.busy = lambda port: flow_key(vip_packed, port) in media
        self.prober = Prober(primary, self._verdict, interval=probe_interval, local=vrrp.local_ip, ifname=service)
        self.worker.extra_status = lambda: {
            "vrrp": self.vrrp.status(),
            "health": self.prober.policy.verdict.value,
            "sip": {**self.sip.uas.counters, "errors": dict(self.sip.uas.faults.counts)},
        }
        self.vrrp_thread = threading.Thread(target=self.vrrp.run, name="shadowrec-vrrp", daemon=True)

    def _verdict(self, v: Verdict):
        self.vrrp.post(Event.PRIMARY_DEAD if v is Verdict.DEAD else Event.PRIMARY_ALIVE)

    def status(self) -> dict:
        return {
            "vrrp": self.vrrp.status(),
            "health": self.prober.policy.verdict.value,
            "sip": {**self.sip.uas.counters, "errors": dict(self.sip.uas.faults.counts)},
            "capture": self.worker.counters(),
        }

    def run(self, max_seconds: float | None = None) -> dict:
        def stop(*_):
            self.worker.stop = True

        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        self.sip.start()
        self.vrrp_thread.start()
        self.prober.start()
        try:
            summary = self.worker.run(max_seconds)
        finally:
            self.prober.close()
            self.vrrp.post(Event.SHUTDOWN)
            self.vrrp_thread.join(3)
            self.sip.close()
            for s, h in old.items():
                signal.signal(s, h)
        summary["vrrp"] = self.vrrp.status()
        summary["sip"] = dict(self.sip.uas.counters)
        return summary
