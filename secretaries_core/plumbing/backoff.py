"""One backoff policy for every retry loop: delays that double from `first` up to `cap`.

Why not tenacity or redis-py's `Retry`: each loop here decides *whether* to try again by
its own rule — an outage grace, a reply's max age, the message deadline, an attempt count,
a server's Retry-After — and several keep serving other work between tries. All they
share is the sequence of delays, which is this.
"""

from __future__ import annotations

import random


def delay(attempt: int, *, first: float, cap: float, jitter: bool = False) -> float:
    """The wait before try `attempt + 1` (attempt 0: `first`), doubled each time, capped;
    with `jitter`, 75-100% of it (callers that retry together do not stay in step)."""
    wait: float = min(first * 2.0 ** min(attempt, 64), cap)
    return wait * random.uniform(0.75, 1.0) if jitter else wait


class Backoff:
    """The delays of one retry loop, in order: `next()` each time, `reset()` on success."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        """The wait before the next try."""
        wait = delay(self.attempt, first=self.first, cap=self.cap)
        self.attempt += 1
        return wait

    def reset(self) -> None:
        """Start again from `first`."""
        self.attempt = 0
