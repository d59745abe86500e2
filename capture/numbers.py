"""Numbers on the wire: ASCII decimal digits only, and bounded.

``str.isdigit()`` is true for "²" and "١٢", which ``int()`` then refuses (or, for Arabic-Indic
digits, accepts), so no parser calls either on text it was sent: they call :func:`decimal`.
"""

from __future__ import annotations

from capture.errors import ParseError

_DIGITS = frozenset(b"0123456789")


def is_decimal(text: str | bytes) -> bool:
    """Whether ``text`` is one or more ASCII digits (and nothing else)."""
    if isinstance(text, str):
        if not text.isascii():
            return False
        text = text.encode("ascii")
    return bool(text) and all(c in _DIGITS for c in text)


def decimal(text: str | bytes, maximum: int, error: type[ParseError], what: str) -> int:
    """``text`` as a number from 0 to ``maximum``: ASCII digits only, else ``error`` naming ``what``."""
    if not is_decimal(text) or len(text) > len(str(maximum)) + 8:  # leading zeros, but not a megabyte of them
        raise error(f"bad {what} {text[:20]!r}")
    n = int(text)
    if n > maximum:
        raise error(f"{what} {n} out of range (at most {maximum})")
    return n
