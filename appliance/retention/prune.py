"""Removing recordings by the retention plan: files first (WAV, pcap, sidecar), then the call's
catalog row and its delivery rows, so the catalog never lists a call whose files were removed on
purpose. A call whose files are all gone already (removed by hand, or a crash between the two
steps) loses its rows on the next run. Calls are unconfirmed if a delivery target whose policy
wants them has not confirmed them (``delivery_targets``, written by ``shadowrec archive``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field

from appliance.delivery.policy import Policy, wanted
from appliance.delivery.queue import Queue
from appliance.retention.plan import Item, Limits, Reason, plan
from capture.clock import epoch

log = logging.getLogger("shadowrec.retention")
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]?)B?$")


def parse_size(text: str) -> int:
    """'500G', '1.5T', '800M', '4096' (bytes; K/M/G/T are powers of 1024)."""
    m = _SIZE.match(text.strip().upper())
    if m is None:
        raise ValueError(f"{text!r} is not a size (e.g. 500G, 1.5T, 800M)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2) or " "))


@dataclass
class Pruned:
    removed: int = 0
    bytes: int = 0
    by_reason: Counter = field(default_factory=Counter)
    orphans: int = 0  # catalog rows whose files were already gone
    errors: list = field(default_factory=list)
    planned: list = field(default_factory=list)  # (id, reason) for --dry-run


def _files(out: str, meta: dict) -> list[str]:
    paths = [meta.get("wav"), meta.get("pcap")]
    wav = meta.get("wav") or ""
    if wav.endswith(".wav"):
        paths.append(wav[:-4] + ".json")
    return [os.path.join(out, p) for p in paths if p]


def _size(paths: list[str]) -> tuple[int, bool]:
    total, any_there = 0, False
    for p in paths:
        try:
            total += os.stat(p).st_size
            any_there = True
        except OSError:
            pass
    return total, any_there


def items_of(out: str, db: sqlite3.Connection, now: float) -> tuple[list[Item], dict[str, list[str]], list[str]]:
    """The calls as plan items (oldest first), their files, and the ids whose files are all gone."""
    targets = [(t, Policy(p)) for t, p in db.execute("SELECT target, policy FROM delivery_targets")]
    confirmed = set(db.execute("SELECT call_id, target FROM deliveries WHERE state = 'confirmed'"))
    items, files, orphans = [], {}, []
    for cid, started, ended, state, text in db.execute(
        "SELECT id, started_at, ended_at, state, meta FROM calls ORDER BY started_at, id"
    ):
        meta = json.loads(text)
        paths = _files(out, meta)
        size, there = _size(paths)
        recording = state != "complete"
        if not there and not recording:
            orphans.append(cid)
            continue
        t = epoch(ended or started)
        age = (now - t) / 86400 if t is not None else 0.0
        gap = wanted(Policy.GAPS, meta)
        unconfirmed = any(wanted(p, meta) and (cid, url) not in confirmed for url, p in targets)
        items.append(Item(cid, age, size, recording, gap, unconfirmed))
        files[cid] = paths
    return items, files, orphans


def prune(out: str, limits: Limits, dry_run: bool = False, now: float | None = None) -> Pruned:
    q = Queue(os.path.join(out, "catalog.sqlite"))  # the tables exist, even on a directory never archived
    db = q.db
    result = Pruned()
    try:
        items, files, orphans = items_of(out, db, time.time() if now is None else now)
        free = shutil.disk_usage(out).free
        decided = plan(items, limits, free)
        result.planned = [(it.id, str(why)) for it, why in decided]
        if dry_run:
            return result
        for cid in orphans:
            db.execute("DELETE FROM calls WHERE id = ?", (cid,))
            db.execute("DELETE FROM deliveries WHERE call_id = ?", (cid,))
            result.orphans += 1
        for it, why in decided:
            if why is Reason.FREE_SPACE_UNCONFIRMED:
                log.error("disk below its free-space floor: removing call %s, which no archive has confirmed", it.id)
            try:
                for p in files[it.id]:
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
            except OSError as e:
                result.errors.append(f"{it.id}: {e}")
                continue
            db.execute("DELETE FROM calls WHERE id = ?", (it.id,))
            db.execute("DELETE FROM deliveries WHERE call_id = ?", (it.id,))
            result.removed += 1
            result.bytes += it.bytes
            result.by_reason[str(why)] += 1
    finally:
        q.close()
    return result
