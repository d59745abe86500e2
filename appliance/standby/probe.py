"""Is the primary recorder alive? SIP OPTIONS probes to its own address, and the verdict.

``HealthPolicy`` is the logic (no I/O, time passed in). The primary is DEAD when a probe is
refused (ICMP port unreachable: the recorder process is gone although its host is up; this
is the case keepalived alone misses) or when ``misses`` probes in a row went unanswered
(the host or its network is gone). It is ALIVE again after ``answers`` answers in a row, so a
flapping primary does not bounce the VIP. ``Prober`` sends the probes from a thread and posts
each verdict change to a callback (the VRRP runner).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from enum import Enum

log = logging.getLogger("shadowrec.health")


class Verdict(Enum):
    UNKNOWN = "unknown"
    ALIVE = "alive"
    DEAD = "dead"


class HealthPolicy:
    def __init__(self, misses: int = 3, answers: int = 5):
        self.misses, self.answers = misses, answers
        self.verdict = Verdict.UNKNOWN
        self.missed = 0
        self.answered = 0
        self.outstanding: dict = {}  # probe id -> sent at
        self.history: list = []  # (t, verdict, why)

    def _set(self, now, v, why):
        if v is not self.verdict:
            self.verdict = v
            self.history.append((now, v, why))
            return v
        return None

    def sent(self, now: float, pid: str):
        """A probe went out; the previous one, if still unanswered, counts as missed."""
        out = None
        if self.outstanding:
            self.outstanding.clear()
            self.missed += 1
            self.answered = 0
            if self.missed >= self.misses:
                out = self._set(now, Verdict.DEAD, f"{self.missed} probes unanswered")
        self.outstanding[pid] = now
        return out

    def answer(self, now: float, pid: str):
        if self.outstanding.pop(pid, None) is None:
            return None
        self.missed = 0
        self.answered += 1
        if self.verdict is Verdict.UNKNOWN or self.answered >= self.answers:
            return self._set(now, Verdict.ALIVE, f"{self.answered} probes answered")
        return None

    def refused(self, now: float):
        self.outstanding.clear()
        self.answered = 0
        self.missed = self.misses
        return self._set(now, Verdict.DEAD, "probe refused (ICMP port unreachable): recorder process down")


class Prober:
    """OPTIONS to ``primary`` (its own address, not the VIP) every ``interval`` seconds."""

    def __init__(
        self,
        primary: str,
        on_verdict,
        interval: float = 0.2,
        port: int = 5060,
        local: str = "",
        policy: HealthPolicy | None = None,
        ifname: str | None = None,
    ):
        self.primary, self.port, self.interval = primary, port, interval
        self.ifname = ifname
        self.flushed_at = 0.0
        self.policy = policy or HealthPolicy()
        self.on_verdict = on_verdict
        self.stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.sock.connect((primary, port))  # a connected socket hears ICMP port unreachable
        self.sock.settimeout(0.02)
        self.tag = f"{random.getrandbits(32):x}"
        self.seq = 0
        self.thread = threading.Thread(target=self.run, name="shadowrec-probe", daemon=True)

    def _options(self, pid: str) -> bytes:
        local, lport = self.sock.getsockname()
        return (
            f"OPTIONS sip:{self.primary}:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local}:{lport};branch=z9hG4bK{pid}\r\n"
            f"From: <sip:shadowrec@{local}>;tag={self.tag}\r\nTo: <sip:{self.primary}>\r\n"
            f"Call-ID: {pid}@shadowrec\r\nCSeq: {self.seq} OPTIONS\r\nMax-Forwards: 70\r\n"
            "User-Agent: shadowrec-health\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def _emit(self, v):
        if v is not None:
            log.warning("primary %s: %s (%s)", self.primary, v.value, self.policy.history[-1][2])
            self.on_verdict(v)

    def _forget_neighbour(self, now: float):
        """While the primary is dead, drop its ARP entry once a second: a host that comes back
        (a reboot, a replaced box) may have a new MAC, and the next probe must ask afresh
        instead of waiting out the kernel's stale entry (about 8 s)."""
        if self.ifname is None or now - self.flushed_at < 1.0:
            return
        self.flushed_at = now
        try:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname=self.ifname)
                if idx:
                    ipr.neigh("del", dst=self.primary, ifindex=idx[0])
        except Exception:  # no entry to delete: nothing to do
            pass

    def run(self):
        nxt = time.monotonic()
        while not self.stop:
            now = time.monotonic()
            if self.policy.verdict is Verdict.DEAD:
                self._forget_neighbour(now)
            if now >= nxt:
                self.seq += 1
                pid = f"{self.tag}-{self.seq}"
                self._emit(self.policy.sent(now, pid))
                try:
                    self.sock.send(self._options(pid))
                except ConnectionRefusedError:
                    self._emit(self.policy.refused(now))
                except OSError:
                    pass
                nxt = now + self.interval
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except ConnectionRefusedError:
                self._emit(self.policy.refused(time.monotonic()))
                continue
            except OSError:
                continue
            i = data.find(b"Call-ID:")
            if data.startswith(b"SIP/2.0 ") and i >= 0:
                cid = data[i + 8 : data.find(b"\r\n", i)].strip().decode(errors="replace").split("@")[0]
                self._emit(self.policy.answer(time.monotonic(), cid))

    def start(self):
        self.thread.start()
        return self

    def close(self):
        self.stop = True
        self.thread.join(1)
        self.sock.close()
