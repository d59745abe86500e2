"""Which copies are one call, and which copy is best. Pure logic, no I/O.

A BiB call's identity is CUCM's cluster and its refci pair (``x-refci``, ``x-farendrefci``),
which every appliance that saw its SIP reads alike. The same pair can come back (CUCM opens new
recording dialogs for the same legs after a hold or a transfer: successive recordings, one
after the other), so two copies with one pair are one call only if they began within
``MATCH_S`` of each other, or one of them joined late (it began when that appliance started)
and their times overlap. A call with no refci (a call of RTP alone) is its appliance's alone.

The best copy is the one that lost the fewest packets: the RTP it counted lost, plus, for a copy
that began later than the earliest one (it joined late), the packets of the time it missed
(50 a second a stream); ties go to the longer copy, then the appliance's name.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

MATCH_S = 2.0  # copies of one call begin within this of each other (the same INVITE, seen twice)
PACKETS_PER_S = 50  # 20 ms packets: what a copy missed by beginning late


def pair_of(meta: dict[str, Any], appliance: str) -> str:
    """The call's identity without its time: ``bib:cluster:near refci:far refci``, or, with no
    refci, ``local:appliance:id`` (never merged)."""
    near, far = meta.get("near") or {}, meta.get("far") or {}
    if near.get("refci") or far.get("refci"):
        return f"bib:{meta.get('cluster') or ''}:{near.get('refci') or ''}:{far.get('refci') or ''}"
    return f"local:{appliance}:{meta['id']}"


def seconds(iso: str | None) -> float | None:
    """An ISO time as the sidecar writes it (``2026-09-21T14:13:22.000Z``), in Unix seconds."""
    if not iso:
        return None
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):  # not a time: as if none (a sidecar hand-edited, or older)
        return None


@dataclass
class Copy:
    """One appliance's recording of a call, as the fleet catalog lists it."""

    appliance: str
    call_id: str
    started: float
    ended: float | None
    joined_late: bool
    lost: int
    frames: int
    streams: int
    state: str
    wav: str | None = None
    pcap: str | None = None
    api: str = ""  # the appliance's API, to play the copy from there
    archive: list[dict[str, str]] = field(default_factory=list)  # confirmed targets: {"target", "key"}
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What ``copies`` shows of it."""
        return {
            "appliance": self.appliance,
            "id": self.call_id,
            "state": self.state,
            "started_at": self.meta.get("started_at"),
            "ended_at": self.meta.get("ended_at"),
            "joined_late": self.joined_late,
            "lost": self.lost,
            "frames": self.frames,
            "wav": self.wav,
            "api": self.api,
            "archive": list(self.archive),
        }


def copy_of(meta: dict[str, Any], appliance: str, api: str = "") -> Copy:
    """A copy from its sidecar (with ``delivery`` per target, as the queue fills it in)."""
    streams = meta.get("streams") or []
    archive = [
        {"target": t, "key": str(d.get("key") or "")}
        for t, d in sorted((meta.get("delivery") or {}).items())
        if d.get("state") == "confirmed"
    ]
    return Copy(
        appliance,
        str(meta["id"]),
        seconds(meta.get("started_at")) or 0.0,
        seconds(meta.get("ended_at")),
        bool(meta.get("joined_late")),
        sum(int(s.get("lost") or 0) for s in streams),
        int(meta.get("frames") or 0),
        len({s.get("role") for s in streams}) or 1,
        str(meta.get("state") or ""),
        meta.get("wav"),
        meta.get("pcap"),
        api,
        archive,
        meta,
    )


def same_call(a: Copy, b: Copy, now: float) -> bool:
    """Whether two copies with one pair are one call (see the module doc); an open copy runs to ``now``."""
    if abs(a.started - b.started) <= MATCH_S:
        return True
    if not (a.joined_late or b.joined_late):
        return False
    return a.started <= (b.ended if b.ended is not None else now) and b.started <= (
        a.ended if a.ended is not None else now
    )


def best(copies: list[Copy]) -> Copy:
    """The copy with the fewest packets lost (see the module doc)."""
    first = min(c.started for c in copies)

    def missed(c: Copy) -> int:
        return c.lost + round((c.started - first) * PACKETS_PER_S * c.streams)

    return min(copies, key=lambda c: (missed(c), -c.frames, c.started, c.appliance, c.call_id))
