"""The disk's state as recording sees it: OK, or FULL (writes failing, or free space below the
floor). A state, never a crash: while FULL, calls go on being tracked, their metadata is kept
(sidecars and catalog rows are retried), and their audio is not written but left as a hole of
the same length (it reads as silence, so every WAV header stays true) and counted per call as a
gap. When space comes back, audio goes on where it is due, with no restart.

``disk_transition`` is the one transition function; ``Space.check`` feeds it, given the writer's
failure count and the free bytes (both read by the caller: no I/O here).
"""

from __future__ import annotations

import enum
import os


class DiskState(enum.StrEnum):
    OK = "ok"
    FULL = "full"


class DiskEvent(enum.Enum):
    WRITE_FAILED = "a write failed (ENOSPC, EIO, ...)"
    LOW = "free space under the floor"
    ROOM = "free space over the floor again, and no write failed since the last check"


def disk_transition(state: DiskState, event: DiskEvent) -> DiskState:
    if event in (DiskEvent.WRITE_FAILED, DiskEvent.LOW):
        return DiskState.FULL
    return DiskState.OK


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Space:
    """The disk state, checked at each sync with the writer's failures and the free space."""

    def __init__(self, floor_bytes: int):
        self.floor = floor_bytes  # FULL below this (room for sidecars, catalog, status, state)
        self.state = DiskState.OK
        self.failures = 0  # the writer's failure count at the last check
        self.free = -1
        self.times_full = 0
        self.gap_frames = 0  # audio not written while FULL, all calls
        self.error = ""  # the last write failure, as the writer saw it

    def check(self, failures: int, free: int, error: str = "") -> bool:
        """Apply what was seen since the last check; True if the disk just came back."""
        if failures > self.failures:
            event = DiskEvent.WRITE_FAILED
            self.error = error
        elif free < self.floor:
            event = DiskEvent.LOW
            self.error = f"{free} bytes free, under the floor of {self.floor}"
        else:
            event = DiskEvent.ROOM
        self.failures, self.free = failures, free
        before, self.state = self.state, disk_transition(self.state, event)
        if before is DiskState.OK and self.state is DiskState.FULL:
            self.times_full += 1
        return before is DiskState.FULL and self.state is DiskState.OK

    @property
    def full(self) -> bool:
        return self.state is DiskState.FULL

    def status(self) -> dict:
        return {
            "state": str(self.state),
            "free_bytes": self.free,
            "floor_bytes": self.floor,
            "times_full": self.times_full,
            "gap_s": round(self.gap_frames / 8000, 3),
            "last_error": self.error,
        }
