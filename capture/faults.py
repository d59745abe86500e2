"""What went wrong, by class: counted always, logged first, then rate-limited.

Every packet is handled inside one boundary (``Recorder.feed``): input that breaks a protocol
raises a :class:`~capture.errors.ParseError` and is counted under its class ("SipError"); any
other exception is a fault of ours that this input found, counted as "unhandled.<Class>" and
logged with the traceback and the frame in hex, so it can be replayed. Either way the loop goes
on. The log gets the first ``first`` of each class, then one line per class per ``every_s``
saying how many more there were. The clock is injected (monotonic seconds).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from capture.errors import ParseError

log = logging.getLogger("shadowrec")
DEFAULT_FIRST = 10  # logged of each class before the rate limit (``shadowrec -v`` logs them all)
MAX_HEX_BYTES = 4096  # a frame is logged whole up to this (jumbo frames are cut)


def error_class(e: BaseException) -> str:
    """The counter an exception is counted under."""
    name = type(e).__name__
    return name if isinstance(e, ParseError) else f"unhandled.{name}"


class Faults:
    """Counters by error class, and a log that cannot be flooded."""

    def __init__(self, first: int | None = None, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.counts: Counter[str] = Counter()
        self.first = DEFAULT_FIRST if first is None else first
        self.every_s = every_s
        self.clock = clock
        self._quiet: dict[str, tuple[float, int]] = {}  # class -> (next log time, count not logged)

    def add(self, e: BaseException, data: bytes | None = None, where: str = "") -> None:
        """Count ``e``; log it if its class has not had its share of the log lately."""
        name = error_class(e)
        self.counts[name] += 1
        if not self._due(name):
            return
        text = f"{name}: {e}" + (f" ({where})" if where else "")
        if isinstance(e, ParseError):
            log.warning("%s", text)
        else:
            hexed = data[:MAX_HEX_BYTES].hex() if data is not None else "-"
            log.error("%s; input (%d bytes): %s", text, len(data or b""), hexed, exc_info=e)

    def _due(self, name: str) -> bool:
        n = self.counts[name]
        if n <= self.first:
            return True
        now = self.clock()
        due, held = self._quiet.get(name, (now + self.every_s, 0))
        if now < due:
            self._quiet[name] = (due, held + 1)
            return False
        self._quiet[name] = (now + self.every_s, 0)
        if held:
            log.warning("%s: %d more not logged in the last %.0f s", name, held, self.every_s)
        return True
