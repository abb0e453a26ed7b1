"""Enqueues of one loop tick share one pipeline (queue/coalesce.py), and each caller still
gets its own answer: queued, a repeat, its own error — against a real Redis, including one
that lost its scripts and one that is gone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.exceptions import ResponseError

from secretaries_core.errors import BackendUnavailable
from secretaries_core.queue import Update
from secretaries_core.queue.client import Queue
from secretaries_core.queue.coalesce import ScriptBatches
from tests.servers import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    found = Queue(redis_url, prefix=f"co{uuid.uuid4().hex[:6]}:", partitions=4)
    yield found
    found.close()


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch sent (a spy: each batch still goes to Redis)."""
    sizes: list[int] = []
    real = ScriptBatches._send

    async def send(self: ScriptBatches, calls: list[Any]) -> list[Any]:
        sizes.append(len(calls))
        return await real(self, calls)

    monkeypatch.setattr(ScriptBatches, "_send", send)
    return sizes


def _queued(queue: Queue) -> list[str]:
    client = queue.client()
    texts = []
    for n in range(queue.keys.partitions):
        for _id, fields in client.xrange(queue.keys.inbound(n)):
            texts.append(fields[b"text"].decode())
    return sorted(texts)


def test_one_tick_of_enqueues_is_one_round_trip_with_an_answer_each(
    queue: Queue, batch_sizes: list[int]
) -> None:
    first = [Update(i, 1_000 + i % 7, f"t{i}") for i in range(50)]

    async def run() -> tuple[list[bool], list[bool]]:
        taken = await asyncio.gather(*(queue.aenqueue(u) for u in first))
        again = [*first[:20], *(Update(100 + i, 2_000 + i, f"n{i}") for i in range(5))]
        repeated = await asyncio.gather(*(queue.aenqueue(u) for u in again))
        await queue.aclose()
        return list(taken), list(repeated)

    taken, repeated = asyncio.run(run())
    assert taken == [True] * 50
    assert repeated == [False] * 20 + [True] * 5
    assert batch_sizes == [50, 25]
    assert _queued(queue) == sorted([f"t{i}" for i in range(50)] + [f"n{i}" for i in range(5)])


def test_a_server_that_lost_its_scripts_gets_them_again(
    queue: Queue, batch_sizes: list[int]
) -> None:
    async def run() -> list[bool]:
        await queue.aenqueue(Update(1, 5, "before"))
        await queue.aclient().script_flush()
        taken = await asyncio.gather(
            *(queue.aenqueue(Update(10 + i, 6, f"a{i}")) for i in range(3))
        )
        await queue.aclose()
        return list(taken)

    assert asyncio.run(run()) == [True, True, True]
    assert _queued(queue) == ["a0", "a1", "a2", "before"]


def test_one_call_failing_fails_only_its_caller(queue: Queue) -> None:
    # The seen set of user 9 is a string: its script fails with WRONGTYPE, nobody else's.
    queue.client().set(queue.keys.seen(queue.keys.partition(9), 9), "not a set")

    async def run() -> list[Any]:
        updates = [Update(1, 8, "ok 1"), Update(2, 9, "doomed"), Update(3, 10, "ok 2")]
        found = await asyncio.gather(*(queue.aenqueue(u) for u in updates), return_exceptions=True)
        await queue.aclose()
        return found

    first, doomed, last = asyncio.run(run())
    assert (first, last) == (True, True)
    assert isinstance(doomed, ResponseError) and "WRONGTYPE" in str(doomed)
    assert _queued(queue) == ["ok 1", "ok 2"]


def test_a_cancelled_caller_leaves_the_others_their_answers(queue: Queue) -> None:
    async def run() -> list[Any]:
        tasks = [
            asyncio.ensure_future(queue.aenqueue(Update(i, 20 + i, f"c{i}"))) for i in range(4)
        ]
        await asyncio.sleep(0)  # each caller joined the batch
        tasks[1].cancel()
        found = await asyncio.gather(*tasks, return_exceptions=True)
        await queue.aclose()
        return found

    found = asyncio.run(run())
    assert found[0] is True and found[2] is True and found[3] is True
    assert isinstance(found[1], asyncio.CancelledError)
    # The cancelled caller's script was already on its way: it is queued (once), as an
    # EVALSHA alone that was cancelled after sending would be.
    assert _queued(queue) == ["c0", "c1", "c2", "c3"]


def test_an_unreachable_server_fails_every_caller_of_the_batch() -> None:
    queue = Queue(f"redis://127.0.0.1:{free_port()}/0", prefix="gone:", partitions=2)

    async def run() -> list[Any]:
        found = await asyncio.gather(
            *(queue.aenqueue(Update(i, i, "x")) for i in range(3)), return_exceptions=True
        )
        await queue.aclose()
        return found

    try:
        found = asyncio.run(asyncio.wait_for(run(), 30))
    finally:
        queue.close()
    assert all(isinstance(f, BackendUnavailable) for f in found), found
