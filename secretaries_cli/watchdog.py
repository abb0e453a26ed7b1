"""A stop that always ends: after the first SIGTERM/SIGINT a service has `grace` seconds.

A clean stop cancels every task and waits for it; one task that swallows its cancel (a
client library turning the cancel into its own timeout error, caught as an outage and
retried) would keep the process alive for ever, and a supervisor's SIGKILL comes without
a word about why. The watchdog is a thread, not a loop callback, so it fires even when the
loop is stuck: it logs the tasks still running, with where each one waits, and exits 1.
Nothing is lost by it: the replies a sender had not sent are still pending in the stream,
and the next sender takes them over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

log = logging.getLogger("secretaries.stop")


def _where(task: asyncio.Task[object]) -> str:
    try:
        frames = task.get_stack(limit=3)
    except Exception:  # read from another thread while the loop runs: best effort
        return task.get_name()
    trail = " > ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames)
    return f"{task.get_name()} ({trail})"


def arm(loop: asyncio.AbstractEventLoop, grace: float, what: str) -> threading.Timer:
    """Exit the process (code 1) if it is still running `grace` seconds from now."""

    def overdue() -> None:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            still = "; ".join(_where(t) for t in pending[:20]) or "none"
        except Exception as exc:  # the task set changed while read from this thread
            still = f"unknown ({type(exc).__name__})"
        log.error("the %s did not stop within %.0fs of the signal; exiting: %s", what, grace, still)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(grace, overdue)
    timer.daemon = True  # a process that stops in time exits without waiting for it
    timer.start()
    return timer
