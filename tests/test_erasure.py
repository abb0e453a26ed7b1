"""Erased means erased: after `users delete`, neither the user's Telegram id nor any text
they sent or received is left in any SQL table or any Redis key, value or stream entry.

On SQLite and PostgreSQL, with contexts in the database, Redis and Redis Cluster, and the
queue on Redis (Cluster with cluster contexts). The user has contexts, usage, quota
counters, a pin and a reply reference, a message queued and not answered, a reply on the
replies stream, a dead letter, live pieces, a drafts board and flood-control keys; one
answer is in flight (the model is slow) when the erase runs, and a summary and a worker's
publish begin before it and end after it; the erase is `secretaries users delete`, run
as a process of its own. Every SQL table and every Redis key (SCAN over
every primary) is then read whole and searched. Another user's data is left as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis
from redis.cluster import RedisCluster
from sqlalchemy import inspect, text

from secretaries_core.catalog import admin
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.config import Settings
from secretaries_core.context import Message
from secretaries_core.context.factory import redis_client
from secretaries_core.context.fences import Fenced
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.queue import Queue, Update
from secretaries_core.queue.answering import queued_ms
from secretaries_core.queue.live import LivePieces
from tests.llm_server import Script, llm_server

VICTIM = 770_012_345
OTHER = 880_054_321
SECRETS = ["zebra-violet-note", "quartz-ember-reply", "inflight-plum-question"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'erase.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["database", "redis", "cluster"])
def contexts(request: pytest.FixtureRequest) -> tuple[str | None, str]:
    """(context URL or None, queue URL)."""
    if request.param == "database":
        return None, str(request.getfixturevalue("redis_url"))
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))
        return url, url
    url = str(request.getfixturevalue("cluster_url"))
    return url, url


def _settings(database: str, context_url: str | None, queue_url: str, model_url: str) -> Settings:
    env = {
        "SECRETARIES_DATABASE_URL": database,
        "SECRETARIES_QUEUE_URL": queue_url,
        "SECRETARIES_REDIS_PREFIX": f"er{uuid.uuid4().hex[:6]}:",
        "SECRETARIES_OPENAI_BASE_URL": model_url,
        "SECRETARIES_MODEL_RETRIES": "0",
        "SECRETARIES_RESOLUTION_TTL": "0",
        "SECRETARIES_HOME": os.environ.get("TMPDIR", "/tmp"),
    }
    if context_url:
        env["SECRETARIES_CONTEXT_URL"] = context_url
    return Settings.load(env=env)


def _cli_env(settings: Settings, context_url: str | None, queue_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(
        SECRETARIES_DATABASE_URL=settings.database_url,
        SECRETARIES_QUEUE_URL=queue_url,
        SECRETARIES_REDIS_PREFIX=settings.redis_prefix,
        SECRETARIES_HOME=str(settings.home),
    )
    if context_url:
        env["SECRETARIES_CONTEXT_URL"] = context_url
    return env


def _clients(url: str) -> list[Redis]:
    client = redis_client(url, asynchronous=False)
    if isinstance(client, RedisCluster):
        return [node.redis_connection for node in client.get_primaries()]  # type: ignore[misc]
    return [client]


def _redis_dump(url: str, prefix: str) -> list[str]:
    """Every key of ours and everything it holds, as text."""
    found: list[str] = []
    for client in _clients(url):
        for raw in client.scan_iter(match=f"{prefix}*", count=1000):
            key = raw.decode(errors="replace")
            kind = client.type(raw).decode()
            if kind == "string":
                value: Any = client.get(raw)
            elif kind == "list":
                value = client.lrange(raw, 0, -1)
            elif kind == "hash":
                value = client.hgetall(raw)
            elif kind == "set":
                value = client.smembers(raw)
            elif kind == "zset":
                value = client.zrange(raw, 0, -1, withscores=True)
            elif kind == "stream":
                value = client.xrange(raw)
            else:
                value = kind
            found.append(f"{key} => {value!r}")
    return found


def _sql_dump(database: str) -> list[str]:
    engine = make_engine(database)
    try:
        out = []
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    out.append(f"{table}: {tuple(row)!r}")
        return out
    finally:
        engine.dispose()


def _leaks(dump: list[str]) -> list[str]:
    needles = [str(VICTIM), *SECRETS]
    return [line for line in dump if any(n in line for n in needles)]


@pytest.fixture
def model() -> Iterator[tuple[str, Script]]:
    with llm_server(Script()) as found:
        yield found


def test_users_delete_leaves_nothing_anywhere(
    database: str, contexts: tuple[str | None, str], model: tuple[str, Script]
) -> None:
    context_url, queue_url = contexts
    model_url, script = model
    engine = make_engine(database)
    schema.upgrade(engine)
    engine.dispose()
    settings = _settings(database, context_url, queue_url, model_url)
    settings = replace(settings, messages_per_day=1000)
    orch = Orchestrator.from_settings(settings)
    registry, store = orch.registry, orch.store
    queue = Queue.from_settings(settings)
    try:
        registry.create_secretary(
            AssistantCreate(name="alice", model="openai/m", prompt="Alice.", is_default=True)
        )
        registry.create_secretary(AssistantCreate(name="bob", model="echo", prompt="Bob."))
        # The user's history: answered messages on two secretaries, usage, a pin, a reply ref.
        orch.handle(VICTIM, f"first {SECRETS[0]}")
        orch.handle(OTHER, "the other user's message")
        registry.assign(VICTIM, "bob")
        orch.handle(VICTIM, f"to bob {SECRETS[0]}")
        alice = registry.get_secretary("alice")
        registry.pin(VICTIM, "alice", 1)
        registry.remember_reply(VICTIM, 4242, alice.id, 1)
        registry.assign(VICTIM, "alice")

        async def queue_side() -> None:
            # A message queued and never answered; a reply, a dead letter, live pieces.
            await queue.aenqueue(Update(11, VICTIM, f"queued {SECRETS[0]}"))
            await queue.aenqueue(Update(12, OTHER, "other queued"))
            answered = Update(13, VICTIM, f"answered {SECRETS[0]}")
            await queue.publish(answered, {"text": f"reply {SECRETS[1]}"})
            await queue.dead_letter(0, "1-1", answered.fields(), f"failed {SECRETS[1]}")
            live = LivePieces(queue, answered, interval=0.01)
            live.feed(f"piece {SECRETS[1]}")
            await asyncio.sleep(0.1)
            await live.end()
            client = queue.aclient()
            await client.set(queue.keys.shown(VICTIM, 13), "1000", ex=60)
            await client.sadd(queue.keys.bots, "999")
            await client.set(queue.keys.flood_chat("999", VICTIM)[0], "1", ex=60)
            await queue.aclose()

        asyncio.run(queue_side())

        # In flight during the erase: an answer waiting on the slow model, a summary and a
        # worker's publish that began before it.
        script.gate = threading.Event()  # the answer waits on the model until the erase ends
        before = queued_ms(f"{int(time.time() * 1000)}-0")

        async def in_flight() -> BaseException | None:
            task = asyncio.ensure_future(orch.ahandle(VICTIM, f"late {SECRETS[2]}"))
            while script.in_flight == 0:
                await asyncio.sleep(0.02)
            # The operator's command, as a process of its own.
            command = ["users", "delete", str(VICTIM), "--yes", "--json"]
            erased = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "secretaries_cli", *command],
                env=_cli_env(settings, context_url, queue_url),
                capture_output=True,
                text=True,
                timeout=120,
            )
            script.gate.set()
            assert erased.returncode == 0, erased.stderr
            assert json.loads(erased.stdout)["queued_dropped"] == 1
            try:
                await task
            except BaseException as exc:
                return exc
            return None

        outcome = asyncio.run(in_flight())
        assert isinstance(outcome, Fenced), outcome

        async def late_writes() -> None:
            # A summary (a store write of a turn that began before the erase) and a
            # worker's reply and live piece for an update queued before it: all refused.
            with pytest.raises(Fenced):
                await store.aappend_many(
                    [(VICTIM, alice.id, Message("assistant", f"summary {SECRETS[2]}", _now()))],
                    since=before / 1000,
                )
            late = Update(14, VICTIM, f"late {SECRETS[2]}")
            with pytest.raises(Fenced):
                await queue.publish(late, {"text": f"late reply {SECRETS[2]}"}, before)
            live = LivePieces(queue, late, interval=0.01, since_ms=before)
            live.feed(f"late piece {SECRETS[2]}")
            await asyncio.sleep(0.1)
            await live.end()
            assert live.published == 0
            await queue.aclose()

        asyncio.run(late_writes())
        orch.flush_usage()

        leaks = _leaks(_sql_dump(database)) + _leaks(_redis_dump(queue_url, settings.redis_prefix))
        if context_url and context_url != queue_url:
            leaks += _leaks(_redis_dump(context_url, settings.redis_prefix))
        assert leaks == [], "\n".join(leaks)

        # The other user is untouched; usage totals per secretary stay.
        assert [m.content for m in store.read(OTHER, alice.id) if m.role == "user"] == [
            "the other user's message"
        ]
        report = admin.usage_report(registry)
        assert report.by_secretary["alice"].messages >= 2
        assert any("other queued" in line for line in _redis_dump(queue_url, settings.redis_prefix))
    finally:
        queue.close()
        orch.close()


def _now() -> Any:
    from secretaries_core.plumbing.timeutil import utcnow

    return utcnow() - timedelta(seconds=0)
