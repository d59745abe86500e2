"""When a failed delivery is tried again: exponential backoff with jitter, without end (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable

BASE_S = 5.0
CAP_S = 3600.0


def delay_s(
    attempts: int, base_s: float = BASE_S, cap_s: float = CAP_S, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the ``attempts``-th failure in a row (1, 2, ...): base·2^(n-1), at most
    ``cap_s``, of which the second half is random ("equal jitter": never 0, never in lockstep)."""
    if attempts < 1:
        return 0.0
    d = min(cap_s, base_s * 2.0 ** min(attempts - 1, 60))
    return d / 2 + rand() * d / 2
