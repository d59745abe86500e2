"""When a target may be sent to: always, or a daily window in the appliance's local time such as
``22:00-06:00`` (it may cross midnight). Pure: the time of day is passed in."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _minutes(text: str) -> int:
    m = _HM.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


@dataclass(frozen=True)
class Window:
    start: int | None = None  # minutes after midnight; None: always
    end: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> Window:
        """``None``, ``""`` or ``"always"``: always; ``"HH:MM-HH:MM"``: daily."""
        if text is None or text.strip() in ("", "always"):
            return cls()
        start, sep, end = text.strip().partition("-")
        if not sep:
            raise ValueError(f"{text!r} is not a window HH:MM-HH:MM")
        a, b = _minutes(start), _minutes(end)
        if a == b:
            raise ValueError(f"{text!r} is an empty window")
        return cls(a, b)

    def open_at(self, minute_of_day: int) -> bool:
        if self.start is None or self.end is None:
            return True
        if self.start < self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end  # across midnight
