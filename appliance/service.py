"""``shadowrec serve``: the appliance as one systemd service.

The parent process runs the API (uvicorn) and supervises one child: the capture engine
(``shadowrec capture`` semantics) or, with ``[standby] enabled``, the standby
(``shadowrec run``: capture, VRRP, health probes, UAS). Keeping the capture in its own
process keeps the API responsive under load and lets a crashed engine be restarted
without dropping the API. systemd sees: READY=1 once the API listens and every capture
worker has reported; WATCHDOG=1 every few seconds while the child lives and reports;
STATUS= a one-line summary; STOPPING=1 on SIGTERM, after which the child saves its open
calls so a restart or package upgrade resumes them in the same files.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time

from appliance.config import Settings, recorder_options, standby_addrs

log = logging.getLogger("shadowrec")


def sd_notify(msg: str) -> bool:
    """Tell systemd (Type=notify) something; a no-op outside systemd. Never blocks: a notify socket
    whose queue is full (nobody reading it) or gone drops the message and says so (False). A
    blocking send stopped the service there for good: its supervisor, and at a stop its STOPPING=1."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.connect(addr)
            s.send(msg.encode())
    except OSError as e:  # BlockingIOError (the queue is full), ECONNREFUSED, ENOENT
        log.debug("sd_notify %s not sent: %s", msg.split("=", 1)[0], e)
        return False
    return True


def _child(settings: Settings):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    c = settings.capture
    opts = recorder_options(c)
    if settings.standby.enabled:
        opts.recorder_addrs = tuple(dict.fromkeys(opts.recorder_addrs + standby_addrs(settings.standby)))
        from appliance.standby.takeover import Standby
        from capture.live.iface import SpanInterface

        opts.state_file = os.path.join(c.out, "state-0.json")
        with SpanInterface(c.span):
            summary = Standby(c.span, opts, settings.standby, c.ring_mb).run()
    else:
        from capture.live.pool import capture

        summary = capture(c.span, opts, workers=c.workers, ring_mb=c.ring_mb, bpf=c.filter)
    if summary.get("error") or summary.get("worker_failures"):
        sys.exit(1)  # e.g. the SPAN interface went away: the supervisor logs it and retries


def delivery_specs(settings: Settings) -> list:
    """The configured targets as the deliverer's specs (policy: gaps while standing by, else all)."""
    from appliance.delivery.deliver import Spec
    from appliance.delivery.formats import Format
    from appliance.delivery.policy import Policy
    from appliance.delivery.window import Window

    default = Policy.GAPS if settings.standby.enabled else Policy.ALL
    return [
        Spec(t.url, Policy(t.policy) if t.policy else default, Window.parse(t.window), t.concurrency,
             t.bandwidth_mbps * 125_000 or None, Format(t.format))
        for t in settings.delivery.targets
    ]  # fmt: skip


def _delivery_child(settings: Settings) -> None:
    """Drains the delivery queue, applies retention and feeds the fleet catalog until SIGTERM (a
    process of its own: a slow archive, a long prune or an unreachable database never holds up
    the API or the capture)."""
    from appliance.delivery.deliver import Deliverer
    from appliance.fleet.push import Pusher
    from appliance.retention.prune import prune

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop: list = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    out = settings.capture.out
    specs = delivery_specs(settings)
    limits = settings.retention.limits()
    deliverer = Deliverer(out, specs) if specs else None
    cat = settings.catalog
    pusher = None
    if cat.url:  # on a thread of its own: a slow archive never delays the fleet catalog, nor it the archive
        pusher = Pusher(out, cat.url, cat.appliance, cat.api_url)
        pushing = threading.Thread(target=pusher.run, args=(lambda: bool(stop), cat.push_interval_s), daemon=True)
        pushing.start()
    next_prune = 0.0
    while not stop:
        if deliverer is not None:
            deliverer.run_once()
        if limits is not None and time.monotonic() >= next_prune:
            next_prune = time.monotonic() + settings.retention.interval_s
            r = prune(out, limits)
            if r.removed or r.errors:
                log.warning("retention: removed %d calls (%s), %d errors", r.removed, dict(r.by_reason), len(r.errors))
        end = time.monotonic() + settings.delivery.interval_s
        while not stop and time.monotonic() < end:
            time.sleep(0.1)
    if deliverer is not None:
        deliverer.close()
    if pusher is not None:
        pushing.join(30)
        pusher.tick()  # what the last moments wrote
        pusher.close()


class Supervisor:
    """Keeps the capture child running; restarts it (with backoff) if it dies."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ctx = mp.get_context("fork")
        self.proc = None
        self.delivery = None
        self.stopping = False
        self.ready_sent = False
        self.backoff = 1.0
        self.delivery_backoff = 1.0  # doubles (to 5 minutes) while the delivery child keeps dying
        self.delivery_started = self.delivery_next = 0.0
        self.thread = threading.Thread(target=self._loop, name="shadowrec-supervisor", daemon=True)

    def start(self, _app=None):
        os.makedirs(self.settings.capture.out, exist_ok=True)
        self._spawn()
        self._spawn_delivery()
        self.thread.start()

    def _spawn(self):
        self.proc = self.ctx.Process(target=_child, args=(self.settings,), name="shadowrec-capture")
        self.proc.start()

    def _spawn_delivery(self):
        s = self.settings
        if s.delivery.targets or s.retention.limits() is not None or s.catalog.url:
            self.delivery = self.ctx.Process(target=_delivery_child, args=(self.settings,), name="shadowrec-delivery")
            self.delivery.start()
            self.delivery_started = time.monotonic()

    def _loop(self):
        while not self.stopping:
            time.sleep(1.0)
            if not self.stopping:
                self._check()

    def _check(self):
        """Once a second: restart a dead engine; while its status is fresh, READY, WATCHDOG, STATUS."""
        from appliance.api.deps import worker_status
        from capture.live.status import merge_counters

        if self.delivery is not None and not self.delivery.is_alive():
            self._restart_delivery(self.delivery.exitcode)
        if not self.proc.is_alive():
            log.error("capture engine exited (%s); restarting in %.0f s", self.proc.exitcode, self.backoff)
            sd_notify(f"STATUS=capture engine exited ({self.proc.exitcode}); restarting")
            time.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, 30.0)
            self._spawn()
            return
        st = worker_status(self.settings)
        fresh = len(st) >= self.settings.capture.workers and all(s["age_s"] < 10 for s in st)
        if not fresh and st and self._disk_full():
            # a disk so full that even the small status files fail: the engine runs (its process
            # is alive) and records what it can; that is a state to report, not a hang to kill
            sd_notify("WATCHDOG=1")
            sd_notify("STATUS=DISK FULL: status files cannot be written; audio is a counted gap")
            return
        if fresh:
            self.backoff = 1.0
            if not self.ready_sent:
                self.ready_sent = sd_notify("READY=1")  # again next time if it could not be sent
            sd_notify("WATCHDOG=1")
            t = merge_counters(st)
            full = any((s.get("disk") or {}).get("state") == "full" for s in st)
            sd_notify(
                f"STATUS=capturing: {t.get('received', 0)} packets, {t.get('active_calls', 0)} active "
                f"calls, {t.get('kernel_drops', 0)} kernel drops"
                + ("; DISK FULL: audio is a counted gap" if full else "")
            )

    def _restart_delivery(self, code: int | None) -> None:
        """The delivery child died: started again after a backoff that doubles while it keeps
        dying within a minute (a crash at start-up, a broken target URL), without holding up
        the capture engine's checks."""
        now = time.monotonic()
        if not self.delivery_next:
            if now - self.delivery_started > 60:
                self.delivery_backoff = 1.0
            self.delivery_next = now + self.delivery_backoff
            log.error("delivery and retention exited (%s); restarting in %.0f s", code, self.delivery_backoff)
            self.delivery_backoff = min(self.delivery_backoff * 2, 300.0)
        if now >= self.delivery_next:
            self.delivery_next = 0.0
            self._spawn_delivery()

    def _disk_full(self) -> bool:
        import shutil

        try:
            return shutil.disk_usage(self.settings.capture.out).free < self.settings.capture.min_free_mb << 20
        except OSError:
            return False

    def stop(self, _app=None):
        self.stopping = True
        sd_notify("STOPPING=1")
        if self.delivery is not None and self.delivery.is_alive():
            os.kill(self.delivery.pid, signal.SIGTERM)
        if self.proc is not None and self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.join(60)
            if self.proc.is_alive():
                self.proc.kill()
        if self.delivery is not None:
            self.delivery.join(30)
            if self.delivery.is_alive():
                self.delivery.kill()


def serve(settings: Settings) -> int:
    import uvicorn

    from appliance.api.main import create_app

    sup = Supervisor(settings)
    app = create_app(settings, on_start=sup.start, on_stop=sup.stop)
    uvicorn.run(app, host=settings.api.listen, port=settings.api.port, log_level="warning")
    return 0
