"""Short, bounded hops from an event loop to a thread for millisecond-long blocking calls.

SQL (SQLite through the stdlib driver, PostgreSQL through psycopg's sync API) runs in a
small private pool of threads: the call takes a thread only for the query itself, never
across a model call, and the pool's size bounds how many queries one process runs at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_HOP_THREADS = 8
# Set on the orchestrator's private loop, which serves only synchronous callers: there a
# millisecond SQL call runs inline, saving two thread switches per call, as a blocking
# `handle()` always did. Other loops (a bot's own) never block on SQL.
RUN_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "secretaries_run_inline", default=False
)


class Hops:
    """A lazily started thread pool for blocking calls made from async code."""

    def __init__(
        self, max_workers: int = DEFAULT_HOP_THREADS, *, name: str = "secretaries"
    ) -> None:
        self.max_workers = max_workers
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
                pool = self._pool
        return pool

    async def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn(*args, **kwargs)` in the pool and await its result."""
        if RUN_INLINE.get():
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await loop.run_in_executor(self._executor(), call)

    def submit(self, fn: Callable[[], R]) -> Future[R]:
        """Run `fn()` in the pool without waiting for it (background upkeep)."""
        return self._executor().submit(fn)

    def close(self) -> None:
        """Stop the pool's threads once their current calls finish."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
