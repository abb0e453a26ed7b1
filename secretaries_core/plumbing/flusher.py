"""A buffer written behind the hot path by a daemon thread, with backoff while it fails."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)
MAX_RETRY_WAIT_S = 10.0


class BackgroundFlush(ABC):
    """Calls `flush()` every `interval` seconds from a thread started on first use.

    A failing flush keeps what it had (the subclass's job) and is retried with a doubling
    wait (up to 10 s): one log line every few seconds during a database outage, not four a
    second. `close()` stops the thread and flushes once more.
    """

    what = "buffered writes"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = False

    @abstractmethod
    def flush(self) -> None:
        """Write what is buffered (raising leaves it buffered)."""

    def _started(self) -> None:
        """Make sure the thread runs (cheap after the first call)."""
        if self._thread is not None or self._closed:
            return
        with self._thread_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name=f"secretaries-{self.what}", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        wait = self.interval
        while not self._closed:
            self._wake.wait(wait)
            try:
                self.flush()
                wait = self.interval
            except Exception as exc:  # kept for the next round
                wait = min(wait * 2, MAX_RETRY_WAIT_S)
                log.error("could not write %s; retrying in %.2gs: %s", self.what, wait, exc)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception as exc:
            log.error("%s lost at shutdown: %s", self.what, exc)
