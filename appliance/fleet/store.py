"""The fleet catalog on PostgreSQL (psycopg 3, a connection pool): one row per call, whichever
appliances recorded it, each of their copies in ``copies``, the best named (``identity``).

Schema changes are versioned migrations (``MIGRATIONS``), applied once each, in order, under an
advisory lock, so appliances starting together do not race. A push is one transaction: the
appliance's changed rows, and how far its changes have been pushed (``appliances.pushed_seq``),
committed together, so a push cut short is sent again whole and a row is never half there.
Rows are taken in the order of their identity and each identity is locked while its copies are
matched, so two appliances pushing the same call at once make one row.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from appliance.fleet.identity import Copy, best, copy_of, pair_of, same_call
from capture.store.catalog import filter_clauses

MIGRATE_LOCK = 0x73687264  # pg_advisory_xact_lock key of migrations ("shrd")

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
CREATE TABLE calls (
    call_key text PRIMARY KEY,
    pair text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    state text NOT NULL,
    end_reason text,
    near_dn text NOT NULL DEFAULT '',
    far_dn text NOT NULL DEFAULT '',
    near_device text NOT NULL DEFAULT '',
    far_device text NOT NULL DEFAULT '',
    primary_failed boolean NOT NULL DEFAULT false,
    best text NOT NULL,
    meta jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_pair ON calls (pair, started_at);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_near_dn ON calls (near_dn);
CREATE INDEX calls_far_dn ON calls (far_dn);
CREATE INDEX calls_near_device ON calls (near_device);
CREATE INDEX calls_far_device ON calls (far_device);
CREATE TABLE copies (
    appliance text NOT NULL,
    call_id text NOT NULL,
    call_key text NOT NULL REFERENCES calls (call_key) ON DELETE CASCADE,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    joined_late boolean NOT NULL,
    lost bigint NOT NULL,
    frames bigint NOT NULL,
    streams integer NOT NULL,
    state text NOT NULL,
    wav text,
    pcap text,
    api text NOT NULL DEFAULT '',
    archive jsonb NOT NULL DEFAULT '[]',
    meta jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (appliance, call_id)
);
CREATE INDEX copies_call ON copies (call_key);
CREATE TABLE appliances (
    name text NOT NULL,
    catalog text NOT NULL,
    pushed_seq bigint NOT NULL,
    api text NOT NULL DEFAULT '',
    pushed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, catalog)
)
""",
    ),
]

_COPY_COLUMNS = (
    "appliance, call_id, started_at, ended_at, joined_late, lost, frames, streams, state, wav, pcap, api, archive, meta"
)


def redact(url: str) -> str:
    """A connection URL fit to show: its password replaced."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _ts(x: float | None) -> datetime.datetime | None:
    return None if x is None else datetime.datetime.fromtimestamp(x, datetime.UTC)


class FleetCatalog:
    """The shared catalog at ``url`` (``postgresql://user:password@host/db``)."""

    def __init__(self, url: str, max_size: int = 4, timeout_s: float = 5.0):
        from psycopg_pool import ConnectionPool

        self.url = url
        self.timeout_s = timeout_s
        self.pool = ConnectionPool(
            url, min_size=0, max_size=max_size, open=False, timeout=timeout_s,
            kwargs={"connect_timeout": max(1, int(timeout_s)), "application_name": "shadowrec"},
        )  # fmt: skip
        self.pool.open(wait=False)
        self.migrated = False

    def close(self) -> None:
        self.pool.close()

    # schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the migrations not yet applied; returns the schema's version."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version not in done:
                    for stmt in filter(str.strip, sql.split(";")):
                        conn.execute(stmt)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        self.migrated = True
        return max(v for v, _ in MIGRATIONS)

    # pushing --------------------------------------------------------------------------------
    def pushed(self, appliance: str, catalog: str) -> int:
        """How far this appliance's catalog (its uuid) has been pushed (its change number)."""
        if not self.migrated:
            self.migrate()
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT pushed_seq FROM appliances WHERE name = %s AND catalog = %s", (appliance, catalog)
            ).fetchone()
        return int(row[0]) if row else 0

    def push(self, appliance: str, catalog: str, rows: list[tuple[int, dict[str, Any]]], api: str = "") -> int:
        """Upsert ``rows`` ((change number, sidecar with its delivery)) and the appliance's mark,
        in one transaction; returns the mark."""
        from psycopg.types.json import Jsonb

        if not self.migrated:
            self.migrate()
        now = datetime.datetime.now(datetime.UTC).timestamp()
        items = sorted(((pair_of(m, appliance), seq, m) for seq, m in rows), key=lambda x: (x[0], x[1]))
        mark = max((seq for seq, _ in rows), default=0)
        with self.pool.connection() as conn, conn.transaction():
            for pair, _, meta in items:
                c = copy_of(meta, appliance, api)
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (pair,))
                key = self._key_of(conn, pair, c, now)
                conn.execute(
                    f"INSERT INTO copies ({_COPY_COLUMNS}, call_key) VALUES "
                    "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (appliance, call_id) DO UPDATE SET "
                    "started_at = excluded.started_at, ended_at = excluded.ended_at, joined_late = "
                    "excluded.joined_late, lost = excluded.lost, frames = excluded.frames, streams = excluded.streams, "
                    "state = excluded.state, wav = excluded.wav, pcap = excluded.pcap, api = excluded.api, "
                    "archive = excluded.archive, meta = excluded.meta, updated_at = now()",
                    (c.appliance, c.call_id, _ts(c.started), _ts(c.ended), c.joined_late, c.lost, c.frames,
                     c.streams, c.state, c.wav, c.pcap, c.api, Jsonb(c.archive), Jsonb(meta), key),
                )  # fmt: skip
                self._choose_best(conn, key)
            conn.execute(
                "INSERT INTO appliances (name, catalog, pushed_seq, api) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (name, catalog) DO UPDATE SET pushed_seq = GREATEST(appliances.pushed_seq, "
                "excluded.pushed_seq), api = excluded.api, pushed_at = now()",
                (appliance, catalog, mark, api),
            )
        return mark

    def _key_of(self, conn: Any, pair: str, c: Copy, now: float) -> str:
        """The call this copy belongs to: where it was put before, else a call of its pair it is
        a copy of, else a new call."""
        row = conn.execute(
            "SELECT call_key FROM copies WHERE appliance = %s AND call_id = %s", (c.appliance, c.call_id)
        ).fetchone()
        if row:
            return str(row[0])
        for key, others in self._copies_of_pair(conn, pair).items():
            if any(same_call(c, o, now) for o in others):
                return key
        key = f"{pair}@{c.meta.get('started_at')}"
        conn.execute(
            "INSERT INTO calls (call_key, pair, started_at, state, best, meta) VALUES (%s, %s, %s, %s, %s, '{}') "
            "ON CONFLICT (call_key) DO NOTHING",
            (key, pair, _ts(c.started), c.state, c.appliance),
        )
        return key

    def _copies_of_pair(self, conn: Any, pair: str) -> dict[str, list[Copy]]:
        out: dict[str, list[Copy]] = {}
        for key, meta, appliance in conn.execute(
            "SELECT cp.call_key, cp.meta, cp.appliance FROM copies cp JOIN calls c USING (call_key) "
            "WHERE c.pair = %s ORDER BY c.started_at",
            (pair,),
        ):
            out.setdefault(key, []).append(copy_of(meta, appliance))
        return out

    def _choose_best(self, conn: Any, key: str) -> None:
        from psycopg.types.json import Jsonb

        copies = [
            copy_of(meta, appliance)
            for appliance, meta in conn.execute("SELECT appliance, meta FROM copies WHERE call_key = %s", (key,))
        ]
        b = best(copies)
        m = b.meta
        conn.execute(
            "UPDATE calls SET started_at = %s, ended_at = %s, state = %s, end_reason = %s, near_dn = %s, "
            "far_dn = %s, near_device = %s, far_device = %s, primary_failed = %s, best = %s, meta = %s, "
            "updated_at = now() WHERE call_key = %s",
            (_ts(min(c.started for c in copies)), _ts(b.ended), b.state, m.get("end_reason"),
             (m.get("near") or {}).get("dn") or "", (m.get("far") or {}).get("dn") or "",
             ((m.get("near") or {}).get("device") or "").upper(), ((m.get("far") or {}).get("device") or "").upper(),
             bool((m.get("primary") or {}).get("failed_at")), b.appliance, Jsonb(m), key),
        )  # fmt: skip

    # reading --------------------------------------------------------------------------------
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
    ) -> list[dict[str, Any]]:
        """Calls as ``Catalog.query`` filters them, each once: its best copy's record, with
        ``call_key``, ``best`` (the appliance) and ``copies``. ``call_id`` is a call key, or any
        copy's id on its appliance."""
        if not self.migrated:
            self.migrate()
        where, args = filter_clauses(since, until, dn, device, end_reason, primary_failed, state, "c.", True)
        if call_id:
            where.append("(c.call_key = ? OR c.call_key IN (SELECT call_key FROM copies WHERE call_id = ?))")
            args += [call_id, call_id]
        where = [w.replace("?", "%s") for w in where]
        sql = (
            "SELECT c.call_key, c.best, c.meta, (SELECT coalesce(json_agg(json_build_object("
            "'appliance', cp.appliance, 'id', cp.call_id, 'state', cp.state, 'started_at', cp.meta->>'started_at', "
            "'ended_at', cp.meta->>'ended_at', 'joined_late', cp.joined_late, 'lost', cp.lost, 'frames', cp.frames, "
            "'wav', cp.wav, 'api', cp.api, 'archive', cp.archive) ORDER BY cp.appliance, cp.call_id), '[]') "
            "FROM copies cp WHERE cp.call_key = c.call_key) FROM calls c"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY c.started_at DESC, c.call_key" if newest_first else " ORDER BY c.started_at, c.call_key"
        if limit is not None:
            sql += " LIMIT %s OFFSET %s"
            args += [int(limit), int(offset)]
        with self.pool.connection() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [dict(meta, call_key=key, best=b, copies=copies) for key, b, meta, copies in rows]
