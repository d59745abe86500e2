"""Live recording from a SPAN interface: ``shadowrec capture --iface IF --out DIR``: the worker processes.

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

import json
import logging
import multiprocessing as mp
import os
import signal
import sqlite3
import sys
import time

from capture.live.iface import SpanInterface
from capture.live.status import merge_status
from capture.live.worker import DEFAULT_RING_MB, Worker
from capture.options import Options
from capture.store import resume
from capture.store.catalog import Catalog

log = logging.getLogger("shadowrec")
MAX_WORKER_FAILURES = 10  # restarts of failed workers before the whole capture gives up


def _worker_main(iface, opts, k, n, ring_mb, block_kb, bpf, max_seconds, ready):
    w = Worker(iface, opts, k, n, ring_mb, block_kb, bpf)

    def on_stop(*_):
        w.stop = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(
        signal.SIGUSR1, lambda *_: print(json.dumps(w.counters(), sort_keys=True), file=sys.stderr, flush=True)
    )
    ready.set()
    if w.run(max_seconds).get("error"):
        sys.exit(1)  # the parent logs it and starts the worker again


def capture(
    iface: str,
    opts: Options,
    workers: int = 1,
    ring_mb: int = DEFAULT_RING_MB,
    block_kb: int = 1024,
    bpf: str | None = None,
    max_seconds: float | None = None,
    offloads_off: bool = True,
    on_ready=None,
) -> dict:
    """Record live until SIGTERM/SIGINT (or ``max_seconds``); returns the merged counters."""
    os.makedirs(opts.out_dir, mode=0o750, exist_ok=True)
    _close_interrupted(opts.out_dir)
    with SpanInterface(iface, offloads_off):
        if workers == 1:
            opts.state_file = opts.state_file or os.path.join(opts.out_dir, "state-0.json")
            w = Worker(iface, opts, 0, 1, ring_mb, block_kb, bpf)

            def on_stop(*_):
                w.stop = True

            old = {s: signal.signal(s, on_stop) for s in (signal.SIGTERM, signal.SIGINT)}
            old[signal.SIGUSR1] = signal.signal(
                signal.SIGUSR1, lambda *_: print(json.dumps(w.counters(), sort_keys=True), file=sys.stderr, flush=True)
            )
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
            o = Options(
                **{**vars(opts), "own_by_rtp": True, "state_file": os.path.join(opts.out_dir, f"state-{k}.json")}
            )
            ev = ctx.Event()
            left = None if max_seconds is None else max(0.1, max_seconds - (time.monotonic() - t0))
            p = ctx.Process(
                target=_worker_main,
                args=(iface, o, k, workers, ring_mb, block_kb, bpf, left, ev),
                name=f"shadowrec-capture-{k}",
            )
            p.start()
            return p, ev

        started = [start(k) for k in range(workers)]
        procs = [p for p, _ in started]
        for p, ev in started:  # a worker that dies starting is not waited for
            deadline = time.monotonic() + 30
            while not ev.wait(0.1) and p.is_alive() and time.monotonic() < deadline:
                pass
        if on_ready:
            on_ready()
        stopping = []
        failures: list = []  # (worker, exit code)

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
                            log.error(
                                "capture worker %d exited with code %s, %d failures: stopping",
                                k,
                                p.exitcode,
                                len(failures),
                            )
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


def _close_interrupted(out_dir: str) -> None:
    """Before any worker starts: calls left open by a kill are closed where their audio ends."""
    catalog = Catalog(os.path.join(out_dir, "catalog.sqlite"))
    try:
        n = resume.close_interrupted(out_dir, catalog)
    except (OSError, sqlite3.Error) as e:  # a full disk: they stay "recording" until the next start
        log.error("calls left open by an earlier kill could not be closed: %s", e)
        n = 0
    finally:
        catalog.close()
    if n:
        log.warning("%d calls left open by an earlier kill (SIGKILL, power loss) closed as interrupted", n)
