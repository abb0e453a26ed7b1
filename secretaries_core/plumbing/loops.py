"""Event-loop plumbing: resources kept per loop, and a private loop for synchronous callers.

Async clients (redis.asyncio, the OpenAI SDK's HTTP pool) belong to the loop they were
first used on. An orchestrator serves the bot's own loop natively and runs `handle()`
callers on one private loop thread, so each client is made once per loop it meets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from secretaries_core.plumbing.hops import RUN_INLINE

T = TypeVar("T")
log = logging.getLogger(__name__)
CLOSE_WAIT_S = 5.0


class PerLoop(Generic[T]):
    """One `T` per running event loop, made by `factory` on first use in that loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
        self._items: dict[asyncio.AbstractEventLoop, T] = {}
        self._lock = threading.Lock()

    def get(self) -> T:
        """This loop's item (made now if it is the first use here)."""
        loop = asyncio.get_running_loop()
        found = self._items.get(loop)
        if found is None:
            with self._lock:
                found = self._items.get(loop)
                if found is None:
                    found = self._items[loop] = self.factory()
        return found

    def values(self) -> list[T]:
        """Every loop's item, as of now."""
        with self._lock:
            return list(self._items.values())

    def close_all(self, close: Callable[[T], Awaitable[Any]]) -> None:
        """Close every item from a thread with no running loop (best effort per loop)."""
        with self._lock:
            items, self._items = dict(self._items), {}
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, item in items.items():
            if loop.is_closed():
                continue  # its sockets went with the loop
            if loop is current:
                # Waiting here would block the very loop that must run the close.
                log.warning("close() called on a running loop; use `await aclose()` there")
                continue
            if loop.is_running():
                try:
                    asyncio.run_coroutine_threadsafe(_awaited(close(item)), loop).result(
                        CLOSE_WAIT_S
                    )
                except Exception:
                    # Shutting down: one loop's failed close must not keep the others open.
                    log.warning("closing a client on another event loop failed", exc_info=True)
            else:
                loop.run_until_complete(_awaited(close(item)))

    async def aclose_current(self, close: Callable[[T], Awaitable[Any]]) -> None:
        """Close the running loop's item."""
        loop = asyncio.get_running_loop()
        with self._lock:
            item = self._items.pop(loop, None)
        if item is not None:
            await close(item)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _inline(coro: Coroutine[Any, Any, T]) -> T:
    # Runs as its own task, so the flag stays in this task's context (and its children's).
    RUN_INLINE.set(True)
    return await coro


class SyncRunner:
    """Runs coroutines for blocking callers: on a loop of the calling thread's own, kept
    between calls (no thread switch per call), or, when that thread already runs a loop,
    on a private loop thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()
        self._thread = LoopThread()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` to completion and return its result."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            return self._thread.run(coro)
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
            with self._lock:
                self._loops.append(loop)
        task = loop.create_task(_inline(coro))
        try:
            return loop.run_until_complete(task)
        except BaseException:
            # Ctrl-C (or any escape) mid-call: the call is cancelled and allowed to unwind,
            # so nothing is left pending for the loop's close to destroy half-way.
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(task)
            raise

    def close(self, closing: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `closing()` on every loop made here, then close them."""
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(closing())
                _cancel_pending(loop)
                loop.close()
        if self._thread.started:
            try:
                self._thread.run(closing())
            finally:
                self._thread.stop()


class LoopThread:
    """A private event loop in a daemon thread, started on first use, for sync callers."""

    def __init__(self, name: str = "secretaries-loop") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started if needed."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the private loop and wait for its result in this thread."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(_inline(coro), self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    @property
    def started(self) -> bool:
        """Whether the loop thread is running."""
        return self._loop is not None

    def stop(self) -> None:
        """Stop the loop and join its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_WAIT_S)
        if not thread.is_alive():
            loop.close()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running on `loop` (background work of an interrupted command)
    and let it unwind, so closing the loop destroys no pending task."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
