"""Which recordings go, oldest first (no I/O).

Rules, in order:
1. Never a call still recording.
2. By age: calls older than ``max_age_days``; calls the primary did not record whole (``gap``: the
   copy here may be the only one) only after ``max_age_gap_days``.
3. By total size: the oldest until the recordings fit in ``max_bytes``.
4. By the free-space floor: the oldest until ``min_free_bytes`` are free.
Steps 2-4 never take a call a delivery target has not confirmed (``unconfirmed``). Only the floor
may, as a last resort, once every confirmed call is gone: the oldest unconfirmed next, each one
reported with its own reason so that it is logged loudly and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    AGE = "age"
    SIZE = "size"
    FREE_SPACE = "free_space"
    FREE_SPACE_UNCONFIRMED = "free_space_unconfirmed"  # the last resort: a copy no target confirmed


@dataclass(frozen=True)
class Item:
    id: str
    age_days: float
    bytes: int
    recording: bool = False
    gap: bool = False
    unconfirmed: bool = False


@dataclass(frozen=True)
class Limits:
    max_age_days: float | None = None
    max_age_gap_days: float | None = None  # default: three times max_age_days
    max_bytes: int | None = None
    min_free_bytes: int | None = None


def plan(items: list[Item], limits: Limits, free_bytes: int | None = None) -> list[tuple[Item, Reason]]:
    """What to remove and why, in order; ``items`` oldest first."""
    out: list[tuple[Item, Reason]] = []
    gone: set[str] = set()

    def take(it: Item, why: Reason) -> None:
        out.append((it, why))
        gone.add(it.id)

    done = [it for it in items if not it.recording]
    free_to_go = [it for it in done if not it.unconfirmed]
    if limits.max_age_days is not None:
        gap_age = limits.max_age_gap_days if limits.max_age_gap_days is not None else 3 * limits.max_age_days
        for it in free_to_go:
            if it.age_days > (gap_age if it.gap else limits.max_age_days):
                take(it, Reason.AGE)
    if limits.max_bytes is not None:
        total = sum(it.bytes for it in items if it.id not in gone)
        for it in free_to_go:
            if total <= limits.max_bytes:
                break
            if it.id not in gone:
                take(it, Reason.SIZE)
                total -= it.bytes
    if limits.min_free_bytes is not None and free_bytes is not None:
        free = free_bytes + sum(it.bytes for it, _ in out)
        for group, why in ((free_to_go, Reason.FREE_SPACE), (done, Reason.FREE_SPACE_UNCONFIRMED)):
            for it in group:
                if free >= limits.min_free_bytes:
                    break
                if it.id not in gone:
                    take(it, why)
                    free += it.bytes
    return out
