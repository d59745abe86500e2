"""Live recording from a SPAN interface: ``shadowrec capture --iface IF --out DIR``.

One worker per core. Each opens its own TPACKET_V3 ring on the interface with a BPF
filter that lets every worker see all SIP and ICMP (little traffic; every worker keeps the
whole call table) but only the RTP of the phones whose source address hashes to it. Both
BiB streams of a call come from the agent's phone, so a call's audio lands on exactly one
worker, which is the one that opens its files (``Options.own_by_rtp``).

Writes go through a bounded queue to a writer thread; when the disk falls behind, audio
is dropped and counted instead of stalling the ring. SIGUSR1 prints the counters,
SIGTERM/SIGINT stop cleanly: open calls are written up to now and saved, and the next
start on the same DIR resumes them in the same files.
"""
from __future__ import annotations

import glob
import json
import logging
import multiprocessing as mp
import os
import signal
import sys
import time

from capture import speedups as _impl
from capture.errors import InterfaceError
from capture.recorder import Options, Recorder
from capture.store.files import write_json_atomic
from capture.store.writer import QueuedIO

log = logging.getLogger("shadowrec")
MAX_WORKER_FAILURES = 10     # restarts of failed workers before the whole capture gives up
NS = 1_000_000_000
# 256 MiB of ring per worker: about 2 s of a saturated 1 Gb/s port, enough for a burst of call set-ups
# (measured: 64 MiB dropped 8-12% at 480k pps while 2,000 calls were set up in a second; 256 MiB dropped 0)
DEFAULT_RING_MB = 256
DRAIN_S = 10.0       # at a stop, read what the ring holds for at most this long (a full 256 MiB ring: ~2 s)


def rtp_filter(sip_ports=(5060,)) -> str:
    """SIP (UDP/TCP), RTP-looking UDP (version 2), ICMP errors and IP fragments."""
    sip = " or ".join(f"port {p}" for p in sip_ports)
    return (f"(udp and ({sip})) or (tcp and ({sip})) or icmp or icmp6 or "
            "(ip and ip[6:2] & 0x3fff != 0) or (ip6 and ip6[6] = 44)")


def worker_filter(k: int, n: int, sip_ports=(5060,), extra: str | None = None) -> str:
    """Worker ``k`` of ``n``: everything but RTP, and RTP from phones with address % n == k."""
    base = rtp_filter(sip_ports)
    rtp = "(udp[8] & 0xc0 = 0x80)"
    if n > 1:
        rtp = f"({rtp} and ((ip and ip[12:4] % {n} = {k}) or (ip6 and ip6[20:4] % {n} = {k})))"
    f = f"({base}) or (udp and {rtp})"
    f = f"({f}) or (vlan and ({f}))"
    return f"({f}) and ({extra})" if extra else f


class Worker:
    """One capture process: a ring per interface (the SPAN port, and the VIP's interface when
    shadowrec answers calls itself), one recorder."""

    def __init__(self, iface, opts: Options, k: int = 0, n: int = 1, ring_mb: int = DEFAULT_RING_MB,
                 block_kb: int = 1024, bpf: str | None = None, answered=None):
        from capture.live.ring import Ring, compile_bpf
        self.k, self.n = k, n
        self.opts = opts
        self.impl = _impl.default()
        block = block_kb * 1024
        prog = compile_bpf(worker_filter(k, n, opts.sip_ports, bpf))
        ifaces = [iface] if isinstance(iface, str) else list(iface)
        self.rings = []
        try:
            for name in ifaces:
                self.rings.append(Ring(name, block, max(2, ring_mb * 1024 * 1024 // block), bpf=prog))
        except Exception:
            for r in self.rings:
                r.close()
            raise
        self.ring = self.rings[0]
        self.io = QueuedIO(opts.queue_mb << 20, self.impl.engine.pwrite_batch, can_wait=self._ring_has_room)
        self.rec = Recorder(opts, self.impl, self.io)
        self.rec.answered_here = answered if answered is not None else set()
        self.extra_status = None              # e.g. the standby's VRRP/health state, merged into status
        self.stop = False
        self.received = 0
        self.last_packet_at = None            # wall time the SPAN port last delivered a packet
        self.status_path = os.path.join(opts.out_dir, f"status-{k}.json")

    def _ring_has_room(self) -> bool:
        """Whether capture may wait for the writer rather than drop audio: every ring is under
        half full (the kernel fills blocks in order), so it holds what arrives meanwhile. From
        half full on, audio is dropped and counted instead: the ring must never overflow."""
        return not self.stop and not any(r.filled_ahead(r.blocks // 2) for r in self.rings)

    def counters(self) -> dict:
        packets = drops = 0
        for r in self.rings:
            p, d = r.stats()
            packets, drops = packets + p, drops + d
        s = self.rec.status()
        s.update({"worker": self.k, "workers": self.n, "received": self.received,
                  "kernel_packets": packets, "kernel_drops": drops, "time": time.time(),
                  "link_errors": sum(r.link_errors for r in self.rings),
                  "last_packet_at": self.last_packet_at, "write_wait_s": round(self.io.wait_s, 3),
                  "cpu_s": round(time.process_time() - getattr(self, "cpu0", time.process_time()), 3),
                  "capture_cpu_s": round(time.thread_time() - getattr(self, "tcpu0", time.thread_time()), 3),
                  "writer_cpu_s": round(self.io.cpu_s(), 3)})
        if self.extra_status is not None:
            s["standby"] = self.extra_status()
        return s

    def _next(self):
        """The next ring block of any interface, waiting up to 100 ms when all are idle."""
        for ring in self.rings:
            off = ring.next_block(0) if len(self.rings) > 1 else None
            if off is not None:
                return ring, off
        if len(self.rings) == 1:
            off = self.ring.next_block(100)
            return (self.ring, off) if off is not None else (None, None)
        import select
        p = select.poll()
        by_fd = {ring.sock.fileno(): ring for ring in self.rings}
        for fd in by_fd:
            p.register(fd, select.POLLIN | select.POLLERR)
        for fd, ev in p.poll(100):
            by_fd[fd].check_poll(ev, 100)      # clears an error flag, or raises if the interface is gone
        for ring in self.rings:
            off = ring.next_block(0)
            if off is not None:
                return ring, off
        return None, None

    def _read(self, ring, off, until_ns: int | None = None) -> bool:
        """Record one ring block (its packets up to ``until_ns``), and give it back to the kernel.
        True if the block held a packet after ``until_ns``."""
        batch = self.impl.index_block(ring.mm, off, ring.block_size)
        later = until_ns is not None and len(batch[0]) > 0 and int(batch[2][-1]) > until_ns
        if later:
            keep = batch[2] <= until_ns
            batch = tuple(x[keep] for x in batch)
        if len(batch[0]):
            self.received += len(batch[0])
            self.rec.feed(ring.mm, *batch)
            self.last_packet_at = time.time()
        ring.release(off)
        return later

    def _drain(self, limit_s: float = DRAIN_S) -> None:
        """At a stop, read what the rings hold from before it: those packets reached the SPAN
        port before the stop, and their audio belongs in the recordings (a stall or a burst can
        leave seconds of them). Packets after the stop are left to the next start. A ring's last
        block is handed over within its 20 ms retire timeout; reading stops after ``limit_s``."""
        stop_ns = time.time_ns()
        deadline = time.monotonic() + limit_s
        for ring in self.rings:
            while time.monotonic() < deadline:
                try:
                    off = ring.next_block(50)
                except InterfaceError:
                    break
                if off is None or self._read(ring, off, stop_ns):
                    break

    def run(self, max_seconds: float | None = None) -> dict:
        rec = self.rec
        end = time.monotonic() + max_seconds if max_seconds else None
        next_status = 0.0
        self.cpu0 = time.process_time()         # this process, all its threads (the writer too)
        self.tcpu0 = time.thread_time()         # the capture loop's own thread
        error = None
        while not self.stop and (end is None or time.monotonic() < end):
            try:
                ring, off = self._next()
            except InterfaceError as e:          # open calls are saved below, to resume on restart
                log.error("%s", e)
                error = str(e)
                break
            if off is not None:
                self._read(ring, off)
            else:
                # The rings are empty: the clock goes on by wall time (timeouts on an idle link). Not
                # while they hold a backlog: after a stall, wall time is ahead of the queued packets,
                # and ticking by it would write out their audio as silence before they are read.
                now = time.time_ns()
                if now >= rec.deadline and rec.deadline:
                    rec.tick(now)
                elif not rec.deadline:
                    rec.deadline = now
            if time.monotonic() >= next_status:
                write_json_atomic(self.status_path, self.counters())
                next_status = time.monotonic() + 1.0
        if error is None:
            self._drain()
        rec.now = max(rec.now, time.time_ns())
        final = self.counters()
        final.update(rec.finish("shutdown"))
        if error:
            final["error"] = error
        write_json_atomic(self.status_path, final)
        for r in self.rings:
            r.close()
        return final


def _worker_main(iface, opts, k, n, ring_mb, block_kb, bpf, max_seconds, ready):
    w = Worker(iface, opts, k, n, ring_mb, block_kb, bpf)

    def on_stop(*_):
        w.stop = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps(w.counters(), sort_keys=True), file=sys.stderr,
                                                   flush=True))
    ready.set()
    if w.run(max_seconds).get("error"):
        sys.exit(1)               # the parent logs it and starts the worker again


def capture(iface: str, opts: Options, workers: int = 1, ring_mb: int = DEFAULT_RING_MB, block_kb: int = 1024,
            bpf: str | None = None, max_seconds: float | None = None, offloads_off: bool = True,
            on_ready=None) -> dict:
    """Record live until SIGTERM/SIGINT (or ``max_seconds``); returns the merged counters."""
    from capture.live.iface import SpanInterface
    os.makedirs(opts.out_dir, exist_ok=True)
    with SpanInterface(iface, offloads_off):
        if workers == 1:
            opts.state_file = opts.state_file or os.path.join(opts.out_dir, "state-0.json")
            w = Worker(iface, opts, 0, 1, ring_mb, block_kb, bpf)

            def on_stop(*_):
                w.stop = True

            old = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
            old[signal.SIGUSR1] = signal.signal(
                signal.SIGUSR1, lambda *_: print(json.dumps(w.counters(), sort_keys=True), file=sys.stderr, flush=True))
            if on_ready:
                on_ready()
            try:
                return w.run(max_seconds)
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        ctx = mp.get_context("fork")
        t0 = time.monotonic()

        def start(k: int):
            o = Options(**{**vars(opts), "own_by_rtp": True,
                           "state_file": os.path.join(opts.out_dir, f"state-{k}.json")})
            ev = ctx.Event()
            left = None if max_seconds is None else max(0.1, max_seconds - (time.monotonic() - t0))
            p = ctx.Process(target=_worker_main, args=(iface, o, k, workers, ring_mb, block_kb, bpf, left, ev),
                            name=f"shadowrec-capture-{k}")
            p.start()
            return p, ev

        procs, readies = zip(*(start(k) for k in range(workers)))
        procs = list(procs)
        for p, ev in zip(procs, readies):     # a worker that dies starting is not waited for
            deadline = time.monotonic() + 30
            while not ev.wait(0.1) and p.is_alive() and time.monotonic() < deadline:
                pass
        if on_ready:
            on_ready()
        stopping = []
        failures: list = []        # (worker, exit code)

        def forward(sig, _frame):
            if sig != signal.SIGUSR1:
                stopping.append(sig)
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, sig if sig != signal.SIGINT else signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
        try:
            while True:
                alive = False
                for k, p in enumerate(procs):
                    p.join(0.2 / workers)
                    if p.is_alive():
                        alive = True
                    elif p.exitcode != 0 and not stopping and not _over(t0, max_seconds):
                        # a worker died (an exception, a signal): say so and start it again. The
                        # calls it had open are lost from here on; new calls are recorded again.
                        failures.append((k, p.exitcode))
                        if len(failures) > MAX_WORKER_FAILURES:
                            log.error("capture worker %d exited with code %s, %d failures: stopping",
                                      k, p.exitcode, len(failures))
                            forward(signal.SIGTERM, None)
                            continue
                        log.error("capture worker %d exited with code %s; starting it again", k, p.exitcode)
                        procs[k] = start(k)[0]
                        alive = True
                if not alive:
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        merged = merge_status(opts.out_dir, workers)
        merged["worker_failures"] = len(failures)
        merged["worker_exit_codes"] = [c for _, c in failures]
        return merged


def _over(t0: float, max_seconds: float | None) -> bool:
    return max_seconds is not None and time.monotonic() - t0 >= max_seconds


def merge_counters(statuses: list) -> dict:
    """The workers' counters added up: every number, and the parse errors by class; of the
    times, the latest packet's."""
    merged: dict = {"errors": {}}
    for s in statuses:
        for key, v in s.items():
            if key == "last_packet_at":
                if v is not None:
                    merged[key] = max(merged.get(key) or v, v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and key not in ("worker", "workers", "time",
                                                                                         "age_s"):
                merged[key] = merged.get(key, 0) + v
            elif key == "errors":
                for e, c in v.items():
                    merged["errors"][e] = merged["errors"].get(e, 0) + c
    return merged


def read_statuses(out_dir: str, workers: int | None = None) -> list:
    """The workers' status files (rewritten every second), each with its ``age_s``: workers
    0..N-1, or every status file in the directory."""
    paths = ([os.path.join(out_dir, f"status-{k}.json") for k in range(workers)] if workers is not None
             else sorted(glob.glob(os.path.join(out_dir, "status-*.json"))))
    out = []
    for p in paths:
        try:
            with open(p) as f:
                s = json.load(f)
            s["age_s"] = round(time.time() - os.path.getmtime(p), 3)
            out.append(s)
        except (OSError, ValueError):
            continue
    return out


def merge_status(out_dir: str, workers: int) -> dict:
    return {**merge_counters(read_statuses(out_dir, workers)), "workers": workers}

