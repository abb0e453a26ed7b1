"""`queue retry` queues each dead letter once: a crash between queueing it and deleting it
from the dead letters, then a rerun, still gives one answer (real Redis, a real worker)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secretaries_core.queue import Update
from secretaries_core.queue.client import decode_fields
from tests.queue.test_workers import Farm, _farm, model_server  # noqa: F401

pytestmark = pytest.mark.redis


@pytest.fixture
def farm(tmp_path: Path, redis_url: str, model_server: str) -> Iterator[Farm]:  # noqa: F811
    yield from _farm(tmp_path, redis_url, model_server)


class _Crash(Exception):
    pass


def test_a_retry_interrupted_after_queueing_and_run_again_answers_once(farm: Farm) -> None:
    update = Update(501, 42_001, "book the room")

    async def bury() -> None:
        await farm.queue.dead_letter(1, "1-1", update.fields(), "SecretariesError: boom")
        await farm.queue.aclose()

    asyncio.run(bury())
    letter = farm.queue.dead_letters()[0]["id"]

    client = farm.queue.client()
    real_xdel = client.xdel

    def crash(*args: Any) -> Any:
        raise _Crash("the process died here")

    client.xdel = crash
    with pytest.raises(_Crash):
        farm.queue.retry([letter])
    client.xdel = real_xdel
    # The rerun (a new process) finds the letter still there, and queues it no second time.
    rerun = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "queue", "retry", "--all", "--json"],
        env=farm.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert farm.queue.dead_letters() == []
    n = farm.queue.keys.partition(update.telegram_id)
    queued = [decode_fields(f) for _i, f in client.xrange(farm.queue.keys.inbound(n))]
    assert [q["update_id"] for q in queued] == ["501"]

    farm.start(1)
    replies = farm.wait_replies(1)
    assert len([r for r in replies if r["update_id"] == "501"]) == 1
    # ...and a third run finds nothing more to do.
    assert farm.queue.retry() == 0
