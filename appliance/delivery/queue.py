"""The delivery queue: one row per (call, target) in the recorder's catalog (``catalog.sqlite``).

A row is added for every complete call a target's policy wants (``enqueue``: calls recorded before
the queue existed are added on the first run, and later calls as they complete). It stays
``pending`` until the target confirmed and verified the copy (``confirm``); a failure records the
error and when to try again (``fail``). Rows are only ever marked confirmed, never deleted here:
retention removes a call's rows with its files. Oldest calls first. About a hundred bytes a row.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from appliance.delivery import policy as pol
from capture.store.catalog import migrate

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    call_id TEXT NOT NULL,
    target TEXT NOT NULL,
    started_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    bytes INTEGER,
    sha256 TEXT,
    confirmed_at REAL,
    first_failed_at REAL,
    key TEXT,                             -- the WAV's object key (or path) at the target, once confirmed
    PRIMARY KEY (call_id, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(target, state, started_at);
CREATE TABLE IF NOT EXISTS delivery_targets (
    target TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,     -- confirmed, ever (rows go with retention; these stay)
    bytes INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Due:
    call_id: str
    started_at: str
    attempts: int


# a call's delivery to one target, as the sidecar, ``calls --json`` and the API show it
STATE_COLUMNS = ("state", "attempts", "last_error", "bytes", "sha256", "confirmed_at", "key")
# the catalog's calls with a delivery still pending (for ``Catalog.query(extra=...)``)
PENDING_SQL: tuple[str, list] = ("id IN (SELECT call_id FROM deliveries WHERE state = 'pending')", [])


def with_delivery(db: sqlite3.Connection, calls: list[dict]) -> list[dict]:
    """``calls`` (sidecars) with their ``delivery`` filled in from the queue (none: as they are)."""
    if not calls:
        return calls
    rows: list = []
    try:
        for i in range(0, len(calls), 500):  # SQLite's limit on arguments
            part = [c["id"] for c in calls[i : i + 500]]
            rows += db.execute(
                f"SELECT call_id, target, {', '.join(STATE_COLUMNS)} FROM deliveries "
                f"WHERE call_id IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
    except sqlite3.OperationalError:  # no queue yet: nothing was ever archived
        return calls
    by_call: dict[str, dict] = {}
    for r in rows:
        by_call.setdefault(r[0], {})[r[1]] = dict(zip(STATE_COLUMNS, r[2:], strict=True))
    for c in calls:
        c["delivery"] = by_call.get(c["id"], {})
    return calls


def targets_status(db: sqlite3.Connection) -> list[dict]:
    """Per registered target: queue depth, the oldest undelivered call's start, when its oldest
    unresolved failure began, the last error, calls and bytes confirmed, failed attempts (the API
    reads it on a read-only connection)."""
    try:
        rows = db.execute(
            "SELECT t.target, t.policy, "
            "(SELECT count(*) FROM deliveries d WHERE d.target = t.target AND d.state = 'pending'), "
            "(SELECT min(started_at) FROM deliveries d WHERE d.target = t.target AND d.state = 'pending'), "
            "(SELECT min(first_failed_at) FROM deliveries d WHERE d.target = t.target AND d.state = 'pending'), "
            "(SELECT last_error FROM deliveries d WHERE d.target = t.target AND d.state = 'pending' "
            " AND last_error IS NOT NULL ORDER BY next_at DESC LIMIT 1), "
            "t.calls, t.bytes, t.failures FROM delivery_targets t ORDER BY t.target"
        ).fetchall()
    except sqlite3.OperationalError:  # nothing archived yet
        return []
    keys = ("target", "policy", "pending", "oldest_pending_started_at", "failing_since", "last_error",
            "confirmed", "bytes_confirmed", "failed_attempts")  # fmt: skip
    return [dict(zip(keys, r, strict=True)) for r in rows]


class Queue:
    def __init__(self, catalog_path: str):
        self.db = sqlite3.connect(catalog_path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        if "key" not in {r[1] for r in self.db.execute("PRAGMA table_info(deliveries)")}:  # a queue from before
            self.db.execute("ALTER TABLE deliveries ADD COLUMN key TEXT")
        migrate(self.db)  # the recorder's table (a queue may open first)

    def register(self, target: str, policy: pol.Policy) -> None:
        """A target and its policy: retention keeps every call it wants until it confirmed it."""
        self.db.execute(
            "INSERT INTO delivery_targets (target, policy) VALUES (?, ?) "
            "ON CONFLICT(target) DO UPDATE SET policy = excluded.policy",
            (target, str(policy)),
        )

    def forget(self, target: str) -> int:
        """Retire a target: its registration and rows go (retention no longer keeps calls for it);
        how many calls it had not confirmed."""
        pending = self.depth(target)
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM deliveries WHERE target = ?", (target,))
        self.db.execute("DELETE FROM delivery_targets WHERE target = ?", (target,))
        self.db.execute("COMMIT")
        return pending

    def enqueue(self, target: str, policy: pol.Policy) -> int:
        """Add a row for every complete call ``policy`` wants that has none for ``target``; how many."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO deliveries (call_id, target, started_at) "
            "SELECT calls.id, ?, calls.started_at FROM calls WHERE calls.state = 'complete' AND "
            f"{pol.sql(policy)} AND NOT EXISTS "
            "(SELECT 1 FROM deliveries d WHERE d.call_id = calls.id AND d.target = ?)",
            (target, target),
        )
        return cur.rowcount

    def due(
        self, target: str, now: float, limit: int, every_pending: bool = False, after: tuple[str, str] = ("", "")
    ) -> list[Due]:
        """Pending rows whose next try is due (``every_pending``: all of them), oldest call first,
        from after the (started_at, call_id) ``after``: a pass pages through the queue once."""
        rows = self.db.execute(
            "SELECT call_id, started_at, attempts FROM deliveries WHERE target = ? AND state = 'pending' "
            "AND (? OR next_at <= ?) AND (started_at > ? OR (started_at = ? AND call_id > ?)) "
            "ORDER BY started_at, call_id LIMIT ?",
            (target, 1 if every_pending else 0, now, after[0], after[0], after[1], limit),
        )
        return [Due(*r) for r in rows]

    def sidecar_text(self, call_id: str) -> str | None:
        row = self.db.execute("SELECT meta FROM calls WHERE id = ?", (call_id,)).fetchone()
        return row[0] if row else None

    def confirm(
        self, call_id: str, target: str, nbytes: int, sha256: str, now: float | None = None, key: str | None = None
    ) -> None:
        """The target has the call, verified (its WAV at ``key``). The call's catalog row counts as
        changed (its next change number): the fleet catalog learns where its archived copy is."""
        self.db.execute(
            "UPDATE delivery_targets SET calls = calls + 1, bytes = bytes + ? WHERE target = ?", (nbytes, target)
        )
        self.db.execute(
            "UPDATE deliveries SET state = 'confirmed', bytes = ?, sha256 = ?, confirmed_at = ?, last_error = NULL, "
            "key = ? WHERE call_id = ? AND target = ?",
            (nbytes, sha256, time.time() if now is None else now, key, call_id, target),
        )
        self.db.execute("UPDATE calls SET seq = (SELECT MAX(seq) + 1 FROM calls) WHERE id = ?", (call_id,))

    def fail(self, call_id: str, target: str, error: str, next_at: float) -> None:
        self.db.execute("UPDATE delivery_targets SET failures = failures + 1 WHERE target = ?", (target,))
        self.db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_at = ?, "
            "first_failed_at = coalesce(first_failed_at, ?) WHERE call_id = ? AND target = ?",
            (error[:500], next_at, time.time(), call_id, target),
        )

    def depth(self, target: str) -> int:
        return self.db.execute(
            "SELECT count(*) FROM deliveries WHERE target = ? AND state = 'pending'", (target,)
        ).fetchone()[0]

    def state(self, call_id: str) -> dict[str, dict]:
        """The call's delivery, per target."""
        return with_delivery(self.db, [{"id": call_id}])[0]["delivery"]

    def close(self) -> None:
        self.db.close()
