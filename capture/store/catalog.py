"""The embedded call catalog: SQLite in WAL mode, one row per call, upserted by call id.

Every write gives the row the next change number (``seq``, one sequence over the whole
database, whichever process writes), so that what changed since a point can be read in order
(``changes``): the fleet catalog on PostgreSQL is fed from here, and rows simply wait here
while it is unreachable. ``uuid`` names this database (a recreated one is a new stream of
changes). The schema is versioned (``PRAGMA user_version``, ``MIGRATIONS``)."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import sqlite3
import time
from typing import Any

MIGRATIONS = [  # (version, SQL): each applied once, in order
    (
        1,
        """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    state TEXT NOT NULL,
    end_reason TEXT,
    near_dn TEXT, far_dn TEXT, near_device TEXT, far_device TEXT,
    primary_failed INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE INDEX IF NOT EXISTS calls_near_dn ON calls(near_dn);
CREATE INDEX IF NOT EXISTS calls_far_dn ON calls(far_dn);
CREATE INDEX IF NOT EXISTS calls_near_device ON calls(near_device);
CREATE INDEX IF NOT EXISTS calls_far_device ON calls(far_device);
""",
    ),
    (
        2,
        """
ALTER TABLE calls ADD COLUMN seq INTEGER;
UPDATE calls SET seq = rowid;
CREATE INDEX calls_seq ON calls(seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('uuid', lower(hex(randomblob(16))));
""",
    ),
]


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to the newest version, each step in one transaction (another process
    that got there first is seen: the version is read again inside it)."""
    for version, sql in MIGRATIONS:
        if db.execute("PRAGMA user_version").fetchone()[0] >= version:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] < version:
                for stmt in filter(str.strip, sql.split(";")):
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version = {int(version)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def filter_clauses(
    since: str | None = None,
    until: str | None = None,
    dn: str | None = None,
    device: str | None = None,
    end_reason: str | None = None,
    primary_failed: bool | None = None,
    state: str | None = None,
    prefix: str = "",
    booleans: bool = False,
) -> tuple[list[str], list[Any]]:
    """The WHERE clauses (``?`` marks) and arguments of ``query``'s filters, over the columns the
    local catalog and the fleet's (``prefix``: its table's alias; ``booleans``: a real boolean
    column) both have; a filter given as None is no filter."""
    dev = device.upper() if device else None
    c = prefix
    filters = (  # (value, clause, its arguments)
        (state or None, f"{c}state = ?", [state]),
        (since or None, f"{c}started_at >= ?", [since]),
        (until or None, f"{c}started_at < ?", [until]),
        (dn or None, f"({c}near_dn = ? OR {c}far_dn = ?)", [dn, dn]),
        (dev, f"({c}near_device = ? OR {c}far_device = ?)", [dev, dev]),
        (end_reason or None, f"{c}end_reason = ?", [end_reason]),
        (primary_failed, f"{c}primary_failed = ?", [bool(primary_failed) if booleans else int(bool(primary_failed))]),
    )
    where = [clause for value, clause, _ in filters if value is not None]
    return where, [a for value, _, values in filters if value is not None for a in values]


class Catalog:
    def __init__(self, path: str, readonly: bool = False):
        if readonly:  # readers (the API) never block the recorder: WAL
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
        else:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._set_up()
        self._batch: list[tuple] = []
        self.busy = 0  # commits put off because another process held the database
        self.failed: collections.deque[tuple] = collections.deque()  # rows whose commit failed, to retry

    def _set_up(self, patience_s: float = 10.0) -> None:
        """WAL mode and the schema. Capture workers open one catalog at the same moment, and
        SQLite refuses the switch to WAL with "database is locked" (no busy wait) while another
        connection holds a lock: that is retried, as long as ``patience_s``."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                migrate(self.db)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def uuid(self) -> str:
        return str(self.db.execute("SELECT value FROM meta WHERE key = 'uuid'").fetchone()[0])

    def changes(self, after: int, limit: int = 500) -> list[tuple[int, str]]:
        """(seq, the row's JSON) of the rows written after change ``after``, in order."""
        sql = "SELECT seq, meta FROM calls WHERE seq > ? ORDER BY seq LIMIT ?"
        return [(int(a), str(b)) for a, b in self.db.execute(sql, (after, limit))]

    def last_change(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM calls").fetchone()[0])

    def changed_after(self, after: int) -> int:
        """How many rows changed after change ``after`` (what ``changes`` would give, counted)."""
        return int(self.db.execute("SELECT COUNT(*) FROM calls WHERE seq > ?", (after,)).fetchone()[0])

    def upsert(self, row: tuple) -> None:
        """Queue a call's row (``Sidecar.catalog_row``); ``commit`` writes the queue in one transaction."""
        self._batch.append(row)

    def commit(self) -> None:
        """Write the queued rows now."""
        self.write(self.take())

    def take(self) -> list:
        """The queued rows, to ``write`` later (on another thread: live capture's writer); rows
        whose commit failed come first, so that a call's newer row still lands last."""
        failed = []
        while self.failed:
            failed.append(self.failed.popleft())
        rows, self._batch = self._batch, []
        return failed + rows

    def write(self, rows: list) -> None:
        """Upsert ``rows`` in one transaction. If it fails (a full disk), they are kept and
        ``take`` hands them out again; the error is raised for the writer to count. A database
        busy for longer than the timeout (another process writing: ``shadowrec archive``) is not
        a failing disk: the rows wait for the next commit, and nothing is raised."""
        if not rows:
            return
        try:
            self._write(rows)
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
            self.failed.extend(rows)
            if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
                self.busy += 1
                logging.getLogger("shadowrec").warning(
                    "catalog busy (%s): %d rows wait for the next commit", e, len(rows)
                )
                return
            raise

    def _write(self, rows: list) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,(SELECT COALESCE(MAX(seq), 0) + 1 FROM calls)) "
            "ON CONFLICT(id) DO UPDATE SET "
            "started_at=excluded.started_at, ended_at=excluded.ended_at, state=excluded.state, "
            "end_reason=excluded.end_reason, near_dn=excluded.near_dn, far_dn=excluded.far_dn, "
            "near_device=excluded.near_device, far_device=excluded.far_device, "
            "primary_failed=excluded.primary_failed, meta=excluded.meta, seq=excluded.seq",
            rows,
        )
        self.db.execute("COMMIT")

    def query(
        self,
        since: str | None = None,
        until: str | None = None,
        dn: str | None = None,
        device: str | None = None,
        end_reason: str | None = None,
        primary_failed: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
        state: str | None = None,
        call_id: str | None = None,
        newest_first: bool = False,
        extra: tuple[str, list[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Calls filtered by time range (ISO strings), DN or device on either side, end reason,
        primary failure, state or id; oldest first unless ``newest_first``. ``extra`` is one more
        WHERE clause and its arguments from a layer above (the delivery queue's pending calls)."""
        where, args = filter_clauses(since, until, dn, device, end_reason, primary_failed, state)
        for value, clause, values in ((call_id or None, "id = ?", [call_id]), (extra, *(extra or ("", [])))):
            if value is not None:
                where.append(clause)
                args += values
        sql = "SELECT meta FROM calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id" if newest_first else " ORDER BY started_at, id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [int(limit), int(offset)]
        return [json.loads(r[0]) for r in self.db.execute(sql, args)]

    def close(self) -> None:
        if self._batch or self.failed:
            try:
                self.commit()
            except sqlite3.Error as e:  # a full disk: the rows are in the sidecars; a re-run writes them
                logging.getLogger("shadowrec").error("catalog: %d rows not written: %s", len(self.failed), e)
        self.db.close()
