"""The queue and its workers under the faults production has, through real processes.

Malformed entries written with a raw XADD, Redis restarted on the same port with and
without AOF and with no call in between, PostgreSQL stopped for seconds, a provider that
repeats its API key back: nothing accepted is lost, doubled, stuck or leaked.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis

from secretaries_core.queue import Update
from secretaries_core.queue.keys import GROUP
from tests.llm_server import llm_server_process
from tests.queue.test_workers import Farm, _check_exactly_once, _farm, _send
from tests.servers import private_postgres, restartable_redis

pytestmark = pytest.mark.xdist_group("queue-faults")


def _wait_answered(farm: Farm, update_ids: set[str], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if update_ids <= {r["update_id"] for r in farm.replies()}:
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}; {farm.queue.stats()}")


MALFORMED: list[tuple[dict[str, bytes | str], str]] = [
    ({"update_id": "901", "telegram_id": "xyz", "text": "hi"}, "telegram_id"),
    ({"update_id": "902", "telegram_id": "10000"}, "no text"),
    ({"update_id": "abc", "telegram_id": "10000", "text": "hi"}, "update_id"),
    ({"colour": "blue", "size": "9"}, "no update_id"),
    ({"update_id": "905", "telegram_id": "10000", "text": b"\xff\xfe bad"}, "UTF-8"),
    ({"update_id": "906", "telegram_id": "10000", "text": "hi", "chat_id": "abc"}, "chat_id"),
]


def test_malformed_entries_are_dead_lettered_and_the_partition_goes_on(
    tmp_path: Path, redis_url: str
) -> None:
    with llm_server_process(0.0) as model:
        for farm in _farm(tmp_path, redis_url, model):
            raw = Redis.from_url(redis_url)
            stream = farm.queue.keys.inbound(farm.queue.keys.partition(10_000))
            for fields, _reason in MALFORMED:
                raw.xadd(stream, fields)  # type: ignore[arg-type]
            farm.queue.enqueue(Update(907, 10_000, "after the bad ones"))
            farm.start(1)
            _wait_answered(farm, {"907"}, "the update behind the bad entries")
            dead = farm.queue.dead_letters()
            assert len(dead) == len(MALFORMED), dead
            for letter, (_fields, reason) in zip(dead, MALFORMED, strict=True):
                assert letter["error"].startswith("MalformedEntry"), letter
                assert reason in letter["error"], (reason, letter)
            assert farm.queue.stats()["pending"] == 0
            assert farm.turns(10_000) == ["after the bad ones"]
            # A restarted worker finds nothing left to choke on.
            farm.queue.enqueue(Update(908, 10_000, "later"))
            farm.start(1)
            _wait_answered(farm, {"908"}, "an update after a restart")
            assert len(farm.queue.dead_letters()) == len(MALFORMED)
            assert all(p.poll() is None for p in farm.workers)
            raw.close()


def test_redis_restarted_without_persistence_recreates_the_groups(tmp_path: Path) -> None:
    with restartable_redis(aof=False) as redis, llm_server_process(0.0) as model:
        for farm in _farm(tmp_path, "", model, queue_url=redis.url):
            farm.start(1)
            first = _send(farm, 10, 2)
            _wait_answered(farm, {str(u.update_id) for u in first}, "before")
            redis.restart()  # no call in between: every pooled connection is stale
            later = _send(farm, 10, 2, first_update=1000)
            _wait_answered(
                farm, {str(u.update_id) for u in later}, "updates accepted after the restart"
            )
            assert farm.workers[0].poll() is None
            log = farm.log(0)
            assert "consumer group missing" in log
            assert "keeps nothing on disk" in log  # the start-up warning
            assert farm.queue.stats()["persistence"] is False


def test_redis_restarted_with_aof_under_load_answers_each_once_in_order(
    tmp_path: Path,
) -> None:
    users, per_user = 60, 6
    with restartable_redis(aof=True) as redis, llm_server_process(0.02) as model:
        for farm in _farm(tmp_path, redis.url, model):
            farm.start(2)
            updates = _send(farm, users, per_user)
            farm.wait_replies(len(updates) // 4)
            redis.restart(down_for=1.0)
            _check_exactly_once(farm, updates, users, per_user)
            assert farm.queue.stats()["persistence"] is True
            assert all(p.poll() is None for p in farm.workers)


def test_postgres_stopped_for_seconds_is_waited_out(tmp_path: Path) -> None:
    users, per_user = 30, 4
    with (
        private_postgres() as pg,
        restartable_redis(aof=True) as redis,
        llm_server_process(0.05) as model,
    ):
        # No resolution cache: every message needs the database.
        for farm in _farm(
            tmp_path, redis.url, model, db_url=pg.url, SECRETARIES_RESOLUTION_TTL="0"
        ):
            farm.start(1)
            updates = _send(farm, users, per_user // 2)
            farm.wait_replies(20)
            pg.stop()
            # Sent while the database is down (an idle machine answered every message of
            # the first half before the stop took effect): these must wait it out.
            updates += _send(
                farm, users, per_user // 2, first_update=len(updates) + 1, first_message=2
            )
            time.sleep(6)
            pg.start()
            _check_exactly_once(farm, updates, users, per_user)
            assert "waits out an outage" in farm.log(0)


def test_one_update_id_from_two_users_is_answered_for_both(tmp_path: Path, redis_url: str) -> None:
    with llm_server_process(0.0) as model:
        for farm in _farm(tmp_path, redis_url, model):
            assert farm.queue.enqueue(Update(5, 10_001, "from one"))
            assert farm.queue.enqueue(Update(5, 10_002, "from two"))
            assert not farm.queue.enqueue(Update(5, 10_002, "from two"))  # a real duplicate
            farm.start(1)
            deadline = time.monotonic() + 60
            while len(farm.replies()) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert Counter(r["telegram_id"] for r in farm.replies()) == {"10001": 1, "10002": 1}
            assert farm.turns(10_001) == ["from one"]
            assert farm.turns(10_002) == ["from two"]


def test_a_provider_that_echoes_the_key_leaks_it_nowhere(tmp_path: Path, redis_url: str) -> None:
    key = "sk-live-TOPSECRET0123456789abcdef"
    from tests.llm_server import Script, llm_server

    with llm_server(Script(default="keyecho")) as (model, script):
        for farm in _farm(tmp_path, redis_url, model, SECRETARIES_OPENAI_API_KEY=key):
            farm.start(1)
            _send(farm, 2, 1)
            replies = farm.wait_replies(2, timeout=60)
            assert script.requests, "the model was asked"
            assert all(r["error"] for r in replies)
            farm.workers[0].terminate()
            farm.workers[0].communicate(timeout=60)
            everything = [
                farm.log(0),
                repr(replies),
                repr(farm.queue.dead_letters()),
            ]
            assert "Incorrect API key" in "".join(everything) or replies
            for text in everything:
                assert key not in text
                assert "TOPSECRET" not in text


def test_slow_workers_are_not_dead_ones(tmp_path: Path, redis_url: str) -> None:
    """Answers slower than the lease: nothing is claimed from the live worker or buried."""
    with llm_server_process(3.5) as model:
        for farm in _farm(tmp_path, redis_url, model, SECRETARIES_QUEUE_LEASE="2"):
            farm.start(2)
            updates = _send(farm, 8, 2)
            _check_exactly_once(farm, updates, 8, 2)


def test_pending_group_state_is_clean_after_restarts(tmp_path: Path, redis_url: str) -> None:
    """`queue stats` tells the truth after the workers come and go."""
    with llm_server_process(0.0) as model:
        for farm in _farm(tmp_path, redis_url, model):
            farm.start(1)
            updates = _send(farm, 5, 2)
            _check_exactly_once(farm, updates, 5, 2)
            stats = farm.queue.stats()
            assert stats["pending"] == 0 and stats["dead_letters"] == 0
            raw = Redis.from_url(redis_url)
            groups = raw.xinfo_groups(farm.queue.keys.inbound(0))
            assert [g["name"] for g in groups] == [GROUP.encode()]
            raw.close()


def test_concurrent_messages_after_a_restart_with_no_call_between(tmp_path: Path) -> None:
    """20 messages at once on pooled connections that a Redis restart made stale."""
    from dataclasses import replace

    from secretaries_core.catalog.models import AssistantCreate
    from secretaries_core.catalog.registry import SecretaryRegistry
    from secretaries_core.config import Settings
    from secretaries_core.orchestrator import Orchestrator
    from secretaries_core.plumbing import schema
    from secretaries_core.plumbing.db import make_engine

    with restartable_redis(aof=True) as redis:
        db = f"sqlite:///{tmp_path / 'r.db'}"
        engine = make_engine(db)
        schema.upgrade(engine)
        SecretaryRegistry(engine).create_secretary(
            AssistantCreate(name="alice", model="echo", prompt="A", is_default=True)
        )
        engine.dispose()
        settings = replace(
            Settings.load(env={"SECRETARIES_HOME": str(tmp_path)}),
            database_url=db,
            database_url_is_default=False,
            context_url=redis.url,
        )

        async def go() -> list[object]:
            async with Orchestrator.from_settings(settings) as orch:
                await asyncio.gather(*(orch.ahandle(100 + i, "warm") for i in range(20)))
                redis.restart()
                return await asyncio.gather(
                    *(orch.ahandle(100 + i, "after") for i in range(20)), return_exceptions=True
                )

        results = asyncio.run(go())
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
