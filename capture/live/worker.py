"""One capture worker: its kernel rings (the SPAN port, and the VIP's interface when shadowrec
answers calls itself), one recorder, a writer thread, its status file every second. It reads ring
blocks until told to stop, ticks the recorder by wall time while the rings are idle, and on a stop
reads what the rings still hold from before it, then saves its open calls to resume them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from capture import speedups
from capture.errors import InterfaceError
from capture.live.filter import compile_bpf, worker_filter
from capture.live.ring import Ring
from capture.options import Options
from capture.recorder import Recorder
from capture.sip.calls import EndReason
from capture.store.files import write_json_atomic
from capture.store.writer import QueuedIO

log = logging.getLogger("shadowrec")
# 256 MiB of ring per worker: about 2 s of a saturated 1 Gb/s port, enough for a burst of call set-ups
# (measured: 64 MiB dropped 8-12% at 480k pps while 2,000 calls were set up in a second; 256 MiB dropped 0)
DEFAULT_RING_MB = 256
DRAIN_S = 10.0  # at a stop, read what the ring holds for at most this long (a full 256 MiB ring: ~2 s)


class Worker:
    """One capture process: a ring per interface (the SPAN port, and the VIP's interface when
    shadowrec answers calls itself), one recorder."""

    def __init__(
        self,
        iface,
        opts: Options,
        k: int = 0,
        n: int = 1,
        ring_mb: int = DEFAULT_RING_MB,
        block_kb: int = 1024,
        bpf: str | None = None,
        answered=None,
    ):
        self.k, self.n = k, n
        self.opts = opts
        self.impl = speedups.default()
        block = block_kb * 1024
        prog = compile_bpf(worker_filter(k, n, opts.sip_ports, bpf, opts.sip_tls_ports))
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
        # SIP Call-IDs the standby's own UAS answered (for the recordings' metadata)
        self.rec.calls.answered_here = answered if answered is not None else set()
        # e.g. the standby's VRRP/health state, merged into status
        self.extra_status: Callable[[], dict] | None = None
        self.stop = False
        self.received = 0
        self.last_packet_at: float | None = None  # wall time the SPAN port last delivered a packet
        self.status_path = os.path.join(opts.out_dir, f"status-{k}.json")
        self.status_errors = 0

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
        s.update(
            {
                "worker": self.k,
                "workers": self.n,
                "received": self.received,
                "kernel_packets": packets,
                "kernel_drops": drops,
                "time": time.time(),
                "link_errors": sum(r.link_errors for r in self.rings),
                "last_packet_at": self.last_packet_at,
                "write_wait_s": round(self.io.wait_s, 3),
                "cpu_s": round(time.process_time() - getattr(self, "cpu0", time.process_time()), 3),
                "capture_cpu_s": round(time.thread_time() - getattr(self, "tcpu0", time.thread_time()), 3),
                "writer_cpu_s": round(self.io.cpu_s(), 3),
                "status_errors": self.status_errors,
            }
        )
        if self.extra_status is not None:
            try:
                s["standby"] = self.extra_status()
            except Exception as e:  # whatever the standby's status met (EMFILE...) stops nothing
                self.rec.faults.add(e, None, "standby status")
                s["standby"] = {"error": f"{type(e).__name__}: {e}"}
        return s

    def _write_status(self, status: dict) -> None:
        """The status file; on a full disk the old one stays (the API then reads the disk's
        state itself) and the failure is counted."""
        try:
            write_json_atomic(self.status_path, status)
        except OSError as e:
            self.status_errors += 1
            if self.status_errors == 1:
                log.error("status file: %s", e)

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
            by_fd[fd].check_poll(ev, 100)  # clears an error flag, or raises if the interface is gone
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
            batch = (batch[0][keep], batch[1][keep], batch[2][keep], batch[3][keep])
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
        self.cpu0 = time.process_time()  # this process, all its threads (the writer too)
        self.tcpu0 = time.thread_time()  # the capture loop's own thread
        error = None
        while not self.stop and (end is None or time.monotonic() < end):
            try:
                ring, off = self._next()
            except InterfaceError as e:  # open calls are saved below, to resume on restart
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
                self._write_status(self.counters())
                next_status = time.monotonic() + 1.0
        if error is None:
            self._drain()
        rec.now = max(rec.now, time.time_ns())
        final = self.counters()
        final.update(rec.finish(EndReason.SHUTDOWN))
        if error:
            final["error"] = error
        self._write_status(final)
        for r in self.rings:
            r.close()
        return final
