"""Feeding the fleet catalog: this appliance's catalog changes, in order, to PostgreSQL.

The local catalog (SQLite) numbers each change (``Catalog.changes``); the fleet catalog keeps how
far each appliance's catalog has been pushed, in the same transaction as the rows. So a push
reads the changes after that mark, sends them in batches, and a crash, a kill or an unreachable
database only delays them: they wait in the local catalog, and are sent (once: an upsert) when
it answers. Recording never waits for it: this runs in a process of its own (``serve``'s
delivery child, or beside ``capture`` and ``run``), or after ``record`` has finished. Failures
back off (1 s doubling to a minute) and are reported in ``DIR/fleet.json`` (``/status.catalog``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from appliance.fleet.store import FleetCatalog, redact
from capture.store.files import write_json_atomic

log = logging.getLogger("shadowrec")
BATCH = 500
STATUS_FILE = "fleet.json"


class Pusher:
    """Pushes ``out``'s catalog to the fleet catalog at ``url`` as appliance ``appliance``."""

    def __init__(self, out: str, url: str, appliance: str, api: str = "", clock: Callable[[], float] = time.time):
        self.out, self.url, self.appliance, self.api, self.clock = out, url, appliance, api, clock
        self.fleet = FleetCatalog(url)
        self.local: Any = None
        self.mark: int | None = None  # how far the fleet catalog has our changes (None: not asked yet)
        self.known = 0  # the last mark the fleet catalog confirmed
        self.backoff = 0.0
        self.next_try = 0.0
        self.status: dict[str, Any] = {
            "url": redact(url), "appliance": appliance, "reachable": None, "pushed": 0, "waiting": None,
            "rows_pushed": 0, "last_push_at": None, "last_error": None, "failing_since": None,
        }  # fmt: skip

    def _local(self) -> Any:
        if self.local is None:
            from capture.store.catalog import Catalog

            self.local = Catalog(os.path.join(self.out, "catalog.sqlite"))  # migrates an older one
        return self.local

    def push_once(self) -> int:
        """Push every change waiting now; returns the rows pushed. Raises what the database raised."""
        from appliance.delivery.queue import with_delivery

        local = self._local()
        if self.mark is None:
            self.mark = self.fleet.pushed(self.appliance, local.uuid)
        sent = 0
        while True:
            changes = local.changes(self.mark, BATCH)
            if not changes:
                break
            metas = with_delivery(local.db, [json.loads(text) for _, text in changes])
            self.mark = self.fleet.push(
                self.appliance, local.uuid, [(seq, m) for (seq, _), m in zip(changes, metas, strict=True)], self.api
            )
            sent += len(changes)
        self.known = self.mark
        waiting = local.changed_after(self.mark)
        self.status.update(reachable=True, pushed=self.mark, waiting=waiting, last_error=None, failing_since=None)
        if sent:
            self.status["rows_pushed"] += sent
            self.status["last_push_at"] = self.clock()
        return sent

    def tick(self) -> int:
        """One attempt, if its backoff has passed: pushed rows, or 0 (the failure is in ``status``)."""
        now = self.clock()
        if now < self.next_try:
            return 0
        try:
            n = self.push_once()
            self.backoff = 0.0
            return n
        except Exception as e:  # psycopg's OperationalError, a pool timeout, a full disk: reported, retried
            self.mark = None  # asked again: a push cut short may or may not have committed
            self.backoff = min(max(1.0, self.backoff * 2), 60.0)
            self.next_try = now + self.backoff
            local = self.local
            waiting = local.changed_after(self.known) if local is not None else None
            self.status.update(reachable=False, last_error=f"{type(e).__name__}: {e}"[:300], waiting=waiting)
            self.status["failing_since"] = self.status["failing_since"] or now
            log.warning("fleet catalog %s: %s; next try in %.0f s", redact(self.url), e, self.backoff)
            return 0
        finally:
            self.write_status()

    def write_status(self) -> None:
        try:
            write_json_atomic(os.path.join(self.out, STATUS_FILE), self.status)
        except OSError as e:  # a full disk: the status waits; pushing does not
            log.debug("fleet status not written: %s", e)

    def run(self, stopped: Callable[[], bool], interval_s: float = 1.0) -> None:
        """Push until ``stopped()``: every ``interval_s``, or sooner after a full batch."""
        while not stopped():
            n = self.tick()
            end = time.monotonic() + (0 if n >= BATCH else interval_s)
            while not stopped() and time.monotonic() < end:
                time.sleep(0.05)

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
        self.fleet.close()


def run_child(out: str, url: str, appliance: str, api: str = "") -> None:
    """A process of its own beside ``capture`` and ``run``: pushes until SIGTERM."""
    import signal

    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    p = Pusher(out, url, appliance, api)
    try:
        p.run(lambda: bool(stop))
        p.tick()  # what the last moments wrote
    finally:
        p.close()


@contextlib.contextmanager
def beside(out: str, url: str | None, appliance: str, api: str = "") -> Iterator[None]:
    """``capture`` and ``run``: a pushing process of their own for as long as they record."""
    if not url:
        yield
        return
    import multiprocessing as mp

    proc = mp.get_context("spawn").Process(
        target=run_child, args=(out, url, appliance, api), name="shadowrec-fleet", daemon=True
    )
    proc.start()
    try:
        yield
    finally:
        proc.terminate()  # SIGTERM: it pushes what the last moments wrote, then exits
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def push_now(out: str, url: str, appliance: str, patience_s: float = 10.0, api: str = "") -> dict[str, Any]:
    """``record``: push everything now, trying for ``patience_s`` at most; returns the status
    (``waiting``: rows left in the local catalog for a later push)."""
    p = Pusher(out, url, appliance, api)
    deadline = time.monotonic() + patience_s
    try:
        while True:
            p.next_try = 0.0  # no backoff here: the patience is the bound
            p.tick()
            if p.status["reachable"] or time.monotonic() >= deadline:
                return dict(p.status)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    finally:
        p.close()
