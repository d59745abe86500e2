"""Capture times as UTC text. Calls that start together share their seconds (and their day),
so each (second, format) is formatted once: datetime and strftime cost 3.5-4.5 µs a call, a
cache hit 0.1 µs."""

from __future__ import annotations

import functools
import time


@functools.lru_cache(maxsize=4096)
def utc(seconds: int, fmt: str) -> str:
    """``time.strftime(fmt)`` of the UTC time ``seconds`` after the epoch."""
    return time.strftime(fmt, time.gmtime(seconds))
