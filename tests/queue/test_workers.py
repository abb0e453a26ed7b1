"""Workers on Redis Streams, as real processes: kills, SIGTERM, dead letters, duplicates.

Everything is real: a private Redis (or 3-master Cluster), `secretaries worker` processes,
an OpenAI-compatible model server process with a small random-ish delay, SQLite for the
catalog and usage. The kill test answers every update exactly once and keeps every user's
turns once each, in send order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import open_context_store
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.queue import Queue, Update
from tests.llm_server import llm_server_process

ROOT = Path(__file__).resolve().parents[2]
# The size; CI may lower it with SECRETARIES_TEST_QUEUE_MESSAGES (see docs).
MESSAGES = int(os.environ.get("SECRETARIES_TEST_QUEUE_MESSAGES", "10000"))


@dataclass
class Farm:
    """A queue, its workers' environment and the model server behind them."""

    queue: Queue
    env: dict[str, str]
    db_url: str
    context_url: str
    prefix: str
    workers: list[subprocess.Popen[str]]
    logs: Path

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            # The log goes to a file: a pipe nobody reads would fill up and stall the worker.
            log = self.logs / f"worker{len(self.workers)}.log"
            with log.open("w") as sink:
                self.workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "secretaries_cli", "worker", "--concurrency", "64"],
                        env=self.env,
                        stdout=subprocess.DEVNULL,
                        stderr=sink,
                        text=True,
                    )
                )

    def log(self, index: int) -> str:
        return (self.logs / f"worker{index}.log").read_text()

    def replies(self) -> list[dict[str, str]]:
        return [fields for _, fields in self.queue.iter_replies()]

    def wait_replies(self, count: int, timeout: float = 240) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.replies()
            if len({r["update_id"] for r in found}) >= count:
                return found
            for i, proc in enumerate(self.workers):
                if proc.poll() not in (None, -9, 0):
                    raise AssertionError(self.log(i)[-3000:])
            time.sleep(0.3)
        raise AssertionError(f"{len(self.replies())} of {count} replies; {self.queue.stats()}")

    def turns(self, telegram_id: int) -> list[str]:
        registry = SecretaryRegistry(make_engine(self.db_url))
        store = open_context_store(
            self.context_url or None,
            policy=Settings.load(env={}).context_policy,
            prefix=self.prefix,
            engine=registry.engine,
        )
        sid = registry.get_secretary("alice").id
        try:
            return [m.content for m in store.read(telegram_id, sid) if m.role == "user"]
        finally:
            store.close()
            registry.engine.dispose()


@pytest.fixture
def model_server() -> Iterator[str]:
    with llm_server_process(0.01) as url:
        yield url


def _farm(
    tmp_path: Path,
    context_url: str,
    model_url: str,
    *,
    queue_url: str | None = None,
    db_url: str | None = None,
    **env: str,
) -> Iterator[Farm]:
    db_url = db_url or f"sqlite:///{tmp_path / 'catalog.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    SecretaryRegistry(engine).create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt="A", is_default=True)
    )
    engine.dispose()
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    full_env.update(
        SECRETARIES_HOME=str(tmp_path / "home"),
        SECRETARIES_QUEUE_URL=queue_url or context_url,
        SECRETARIES_DATABASE_URL=db_url,
        SECRETARIES_CONTEXT_URL=context_url,
        SECRETARIES_REDIS_PREFIX=prefix,
        SECRETARIES_QUEUE_PARTITIONS="8",
        # Long enough that a loaded 2-core machine never looks dead (CI runs beside others).
        SECRETARIES_QUEUE_LEASE="8",
        SECRETARIES_OPENAI_BASE_URL=model_url,
        SECRETARIES_MODEL_RETRIES="0",
        SECRETARIES_MODEL_TIMEOUT="30",
        SECRETARIES_CONTEXT_MAX_MESSAGES="1000",
        PYTHONPATH=str(ROOT),
    )
    full_env.update(env)
    queue = Queue(queue_url or context_url, prefix=prefix, partitions=8)
    farm = Farm(queue, full_env, db_url, context_url, prefix, [], tmp_path)
    try:
        yield farm
    finally:
        for proc in farm.workers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        queue.close()


def _send(
    farm: Farm, users: int, per_user: int, first_update: int = 1, first_message: int = 0
) -> list[Update]:
    updates = [
        Update(first_update + i * users + u, 10_000 + u, f"m{first_message + i} of {u}")
        for i in range(per_user)
        for u in range(users)
    ]

    async def go() -> None:
        # Users concurrently, each user's messages one after the other (as a bot sends).
        for i in range(per_user):
            await asyncio.gather(
                *(farm.queue.aenqueue(u) for u in updates[i * users : (i + 1) * users])
            )
        await farm.queue.aclose()

    asyncio.run(go())
    return updates


def _check_exactly_once(farm: Farm, updates: list[Update], users: int, per_user: int) -> None:
    replies = farm.wait_replies(len(updates))
    counts = Counter(r["update_id"] for r in replies)
    assert set(counts) == {str(u.update_id) for u in updates}
    assert max(counts.values()) == 1, counts.most_common(3)
    errors = [(r["update_id"], r["error"]) for r in replies if r["error"]]
    assert errors == [], errors[:3]
    for u in range(0, users, max(1, users // 25)):
        assert farm.turns(10_000 + u) == [f"m{i} of {u}" for i in range(per_user)]
    # Nothing stuck: a reply is published before its entry is acknowledged, and an
    # acknowledgement that met a restarting Redis is retried with backoff, so the last
    # entries may still be pending for a moment after the last reply is seen.
    deadline = time.monotonic() + 30
    while True:
        stats = farm.queue.stats()
        if (stats["pending"] == 0 and stats["inbound"] == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["pending"] == 0 and stats["inbound"] == 0 and stats["dead_letters"] == 0, stats


@pytest.mark.xdist_group("queue-load")
def test_four_workers_two_killed_every_update_answered_once(
    tmp_path: Path, redis_url: str, model_server: str
) -> None:
    users, per_user = 500, MESSAGES // 500
    for farm in _farm(tmp_path, redis_url, model_server):
        farm.start(4)
        updates = _send(farm, users, per_user)
        farm.wait_replies(len(updates) // 4)
        for victim in farm.workers[:2]:
            victim.send_signal(signal.SIGKILL)
        farm.start(2)  # restarted
        _check_exactly_once(farm, updates, users, per_user)


@pytest.mark.long
def test_on_a_redis_cluster(tmp_path: Path, cluster_url: str, model_server: str) -> None:
    users, per_user = 40, 10
    for farm in _farm(tmp_path, cluster_url, model_server):
        farm.start(2)
        updates = _send(farm, users, per_user)
        farm.wait_replies(len(updates) // 3)
        farm.workers[0].send_signal(signal.SIGKILL)
        farm.start(1)
        _check_exactly_once(farm, updates, users, per_user)


def test_sigterm_drains_and_exits_0(tmp_path: Path, redis_url: str, model_server: str) -> None:
    users, per_user = 50, 10
    for farm in _farm(tmp_path, redis_url, model_server):
        farm.start(2)
        updates = _send(farm, users, per_user)
        farm.wait_replies(60)
        first = farm.workers[0]
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        err = farm.log(0)
        assert first.returncode == 0, err[-2000:]
        assert "Traceback" not in err
        _check_exactly_once(farm, updates, users, per_user)


def test_a_model_that_always_fails_dead_letters_then_retry(tmp_path: Path, redis_url: str) -> None:
    # An outage longer than the grace (2 s here) ends in the dead letters.
    for farm in _farm(tmp_path, redis_url, "http://127.0.0.1:9/v1", SECRETARIES_OUTAGE_GRACE="2"):
        farm.start(1)
        updates = _send(farm, 3, 2)
        replies = farm.wait_replies(6, timeout=120)
        assert all(r["error_code"] == "ModelUnavailable" for r in replies)
        dead = farm.queue.dead_letters()
        assert len(dead) == 6 and all("ModelUnavailable" in d["error"] for d in dead)
        # Each entry is acknowledged just after its reply is published: wait for the last.
        deadline = time.monotonic() + 30
        while farm.queue.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert farm.queue.stats()["pending"] == 0
        # The model comes back: `queue retry --all` answers them.
        from tests.llm_server import llm_server

        with llm_server() as (url, _script):
            farm.workers[0].send_signal(signal.SIGTERM)
            farm.workers[0].communicate(timeout=60)
            farm.env["SECRETARIES_OPENAI_BASE_URL"] = url
            farm.start(1)
            cli = subprocess.run(
                [sys.executable, "-m", "secretaries_cli", "queue", "retry", "--all", "--json"],
                env=farm.env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert '"retried": 6' in cli.stdout

            def good(farm: Farm = farm) -> int:
                return sum(1 for r in farm.replies() if not r["error"])

            deadline = time.monotonic() + 60
            while good() < 6 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert good() == 6
        assert farm.queue.dead_letters() == []
        assert farm.turns(10_000) == ["m0 of 0", "m1 of 0"]
        del updates


def test_the_same_update_three_times_at_once_is_queued_once(redis_url: str) -> None:
    queue = Queue(redis_url, prefix=f"d{uuid.uuid4().hex[:6]}:", partitions=4)
    update = Update(77, 1234, "hi")

    async def go() -> list[bool]:
        results = await asyncio.gather(*(queue.aenqueue(update) for _ in range(3)))
        await queue.aclose()
        return list(results)

    assert sorted(asyncio.run(go())) == [False, False, True]
    assert queue.stats()["inbound"] == 1
    queue.close()


def test_post_updates_is_idempotent_over_http(tmp_path: Path, redis_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from secretaries_api import create_app
    from secretaries_api.services import Services
    from secretaries_core.context import SqlContextStore
    from secretaries_core.orchestrator import Orchestrator

    engine = make_engine(f"sqlite:///{tmp_path / 'api.db'}")
    schema.upgrade(engine)
    prefix = f"h{uuid.uuid4().hex[:6]}:"
    settings = replace(Settings.load(env={}), queue_url=redis_url, redis_prefix=prefix)
    registry = SecretaryRegistry(engine)
    store = SqlContextStore(engine, settings.context_policy)
    services = Services(settings, registry, store, Orchestrator(registry, store, settings))
    headers = {"Authorization": "Bearer t"}
    with TestClient(create_app(services, api_token="t"), headers=headers) as client:
        body = {"update_id": 5, "telegram_id": 42, "text": "hi", "chat_id": -100}
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: client.post("/api/updates", json=body), range(3)))
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 200, 202]
        assert [r.json() for r in answers if r.status_code == 202] == [{"queued": True}]
        assert all(
            r.json() == {"queued": False, "duplicate": True}
            for r in answers
            if r.status_code == 200
        )
        bad = client.post("/api/updates", json={**body, "update_id": 6, "text": "a\x00b"})
        assert bad.status_code == 422
        scraped = client.get("/metrics").text
        assert 'secretaries_queue{what="inbound"} 1.0' in scraped
        # The queue's figures are reused for 10 s: a scrape is not a round trip per key.
        client.post("/api/updates", json={**body, "update_id": 7})
        assert 'secretaries_queue{what="inbound"} 1.0' in client.get("/metrics").text
    queue = Queue(redis_url, prefix=prefix, partitions=16)
    assert queue.stats()["inbound"] == 2
    queue.close()
    services.orchestrator.close()
    engine.dispose()
