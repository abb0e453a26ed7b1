"""The stop watchdog: a process whose task swallows every cancel still ends, and says why."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SCRIPT = r"""
import asyncio, logging, signal, sys
from secretaries_cli import watchdog

logging.basicConfig(level=logging.INFO, stream=sys.stderr)

async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # a loop that takes its cancel for an outage

async def main() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(stubborn(), name="stubborn-sender")
    stop = asyncio.Event()
    def on_signal() -> None:
        watchdog.arm(loop, 1.5, "bot")
        stop.set()
    loop.add_signal_handler(signal.SIGTERM, on_signal)
    print("ready", flush=True)
    await stop.wait()
    task.cancel()
    await task  # never ends

asyncio.run(main())
"""


def test_a_task_that_swallows_its_cancel_cannot_keep_the_process_alive() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    told = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    took = time.monotonic() - told
    assert proc.returncode == 1
    assert 1.4 <= took < 15, took
    assert "did not stop within 2s of the signal" in err
    assert "stubborn-sender (stubborn:" in err
