"""A short-TTL cache of user → secretary resolution, so the hot path skips the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from secretaries_core.instances import SecretarySnapshot
from secretaries_core.schemas import Source


@dataclass(frozen=True)
class Resolved:
    """A cached resolution: the secretary snapshot and where it came from."""

    secretary: SecretarySnapshot
    source: Source


class ResolutionCache:
    """Telegram id → `Resolved`, each entry valid for `ttl` seconds.

    In this process it is cleared by the registry's change notifications (assign,
    deactivate, update ...); changes made by other processes show within `ttl`.
    """

    def __init__(
        self, ttl: float, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[int, tuple[float, Resolved]] = {}
        self._lock = threading.Lock()

    def get(self, telegram_id: int) -> Resolved | None:
        """The cached resolution, or None when absent or older than the TTL."""
        found = self._entries.get(telegram_id)
        if found is None or self.clock() >= found[0]:
            return None
        return found[1]

    def put(self, telegram_id: int, resolved: Resolved) -> None:
        """Remember a resolution for `ttl` seconds."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                # Bounded memory: start over rather than track recency on the hot path.
                self._entries.clear()
            self._entries[telegram_id] = (self.clock() + self.ttl, resolved)

    def invalidate(self, telegram_id: int | None = None) -> None:
        """Forget one user's entry, or every entry."""
        with self._lock:
            if telegram_id is None:
                self._entries.clear()
            else:
                self._entries.pop(telegram_id, None)
