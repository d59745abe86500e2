"""Where a call's files go at a target: ``<prefix>/YYYY/MM/DD/<id>.<ext>``, from the call's start
(UTC). Deterministic: a copy sent again after a crash replaces the same object, never adds one."""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T")


def key(prefix: str, call_id: str, started_at: str, ext: str) -> str:
    """The object key (or relative path) of one of the call's files."""
    if not _ID.match(call_id) or call_id in (".", ".."):
        raise ValueError(f"call id {call_id!r} cannot name a file")
    m = _DAY.match(started_at or "")
    if m is None:
        raise ValueError(f"call {call_id} has no start time ({started_at!r})")
    parts = [p for p in prefix.strip("/").split("/") if p]
    return "/".join([*parts, *m.groups(), f"{call_id}.{ext}"])
