"""Usage written behind the message path: summed in memory, flushed in batches.

Recording usage must not cost a database write on every message: the writer sums calls
per (user, secretary, model, day) row and per user-day, and one background thread writes
the sums every `interval` seconds (two upserts in one transaction, however many messages).
`flush()` writes now (reports, shutdown); `close()` stops the thread after a last flush.
A crash loses at most one interval of usage; a failed write keeps its sums for the next.
Quota *admission* is not deferred (it is one conditional upsert before the model call);
only the token correction after the call is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from secretaries_core.plumbing.flusher import BackgroundFlush
from secretaries_core.usage.book import PendingUsage, UsageBook, UsageEntry

log = logging.getLogger(__name__)


class UsageWriter(BackgroundFlush):
    """Thread-safe buffer of usage with a lazily started flushing thread."""

    what = "usage"

    def __init__(
        self,
        book: UsageBook,
        *,
        interval: float = 0.25,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        super().__init__(interval)
        self.book = book
        self.on_error = on_error
        self._pending = PendingUsage()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def add(self, entries: Sequence[UsageEntry], admitted_tokens: int | None = None) -> None:
        """Queue one call's usage (no I/O here)."""
        with self._lock:
            self._pending.add(entries, admitted_tokens)
        self._started()

    def flush(self) -> None:
        """Write everything queued so far, now, in the calling thread."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, PendingUsage()
            if batch.empty:
                return
            try:
                self.book.write(batch)
            except Exception as exc:
                with self._lock:
                    batch.merge(self._pending)
                    self._pending = batch
                if self.on_error is not None:
                    self.on_error(exc)
                raise
