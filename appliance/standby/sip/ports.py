"""The RTP ports shadowrec offers in its 200 OKs: even ports of a range, each with its RTCP port
(port + 1). ``PortPool`` is the logic (no I/O); the server's subclass holds a socket on both ports
of every offered pair, so a phone's RTP and RTCP meet an open port and the kernel sends no ICMP
port unreachable. The capture engine records the RTP from the wire; nothing reads those sockets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

OUT_OF_RESOURCES = frozenset({"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"})


class PortPool:
    """Even ports in ``[lo, hi]``, handed out round-robin (a port just freed is offered last, so a
    late packet of an ended call does not land in the next call)."""

    def __init__(self, lo: int = 16384, hi: int = 49150, busy: Callable[[int], bool] = lambda p: False):
        if not 0 < lo <= hi < 65535:
            raise ValueError(f"bad RTP port range {lo}-{hi}")
        self.lo, self.hi = lo + (lo & 1), hi - (hi & 1)
        self.next = self.lo
        self.in_use: set[int] = set()
        # ports the wire shows in use on this address (calls the primary answered, still running):
        # an offer must never send a second phone to a port another phone streams to
        self.busy = busy
        self.refused: Counter[str] = Counter()  # ports that could not be held, by reason

    @property
    def size(self) -> int:
        return (self.hi - self.lo) // 2 + 1

    def acquire(self) -> int | None:
        """A free even port, held; None when every port is taken."""
        for _ in range(self.size):
            p = self.next
            self.next = p + 2 if p + 2 <= self.hi else self.lo
            if p in self.in_use or self.busy(p) or self.busy(p + 1):
                continue
            why = self._hold(p)
            if why:
                self.refused[why] += 1
                if why in OUT_OF_RESOURCES:  # no other port would do better: answer 503 at once
                    return None
                continue
            self.in_use.add(p)
            return p
        return None

    def hold(self, port: int) -> bool:
        """Hold this port (a call in progress taken up with the VIP), if free and holdable."""
        if port in self.in_use or not 0 < port < 65535:
            return False
        why = self._hold(port)
        if why:
            self.refused[why] += 1
            return False
        self.in_use.add(port)
        return True

    def release(self, port: int) -> None:
        if port in self.in_use:
            self.in_use.discard(port)
            self._drop(port)

    def release_all(self) -> None:
        for p in list(self.in_use):
            self.release(p)

    # the server's subclass holds sockets -----------------------------------------------------
    def _hold(self, port: int) -> str:
        """Hold ``port`` and ``port + 1``; '' when done, else why not (counted, the next port tried)."""
        return ""

    def _drop(self, port: int) -> None:
        pass
