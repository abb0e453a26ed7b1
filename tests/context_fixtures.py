"""Context-store fixtures: one store per backend (SQLite, PostgreSQL, Redis, Redis Cluster)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from redis import Redis
from redis.cluster import RedisCluster

from secretaries_core.context import ContextPolicy, ContextStore, open_context_store
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.servers import redis_cluster, redis_server

CONTEXT_BACKENDS = ["sqlite", "postgresql", "redis", "cluster"]
POLICY = ContextPolicy(timedelta(hours=1), 5)


@dataclass
class StoreHandle:
    """A store plus what tests need around it: its URL and a way to wipe it."""

    store: ContextStore
    url: str | None
    backend: str
    reset: Callable[[], None]
    raw: Redis | RedisCluster | None = None


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a private redis-server ($SECRETARIES_TEST_REDIS_URL overrides)."""
    given = os.environ.get("SECRETARIES_TEST_REDIS_URL")
    if given:
        yield given
        return
    with redis_server() as (port, _root):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """URL of a private 3-master Redis Cluster ($SECRETARIES_TEST_CLUSTER_URL overrides)."""
    given = os.environ.get("SECRETARIES_TEST_CLUSTER_URL")
    if given:
        yield given
        return
    with redis_cluster(3) as ports:
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)


def _flush(client: Redis | RedisCluster, prefix: str) -> Callable[[], None]:
    def reset() -> None:
        if isinstance(client, RedisCluster):
            client.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            client.flushdb()

    return reset


def make_store(
    request: pytest.FixtureRequest, backend: str, policy: ContextPolicy = POLICY
) -> Iterator[StoreHandle]:
    """Build a store of `backend`, wiped before use, closed after."""
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    if backend in ("sqlite", "postgresql"):
        if backend == "sqlite":
            url = f"sqlite:///{request.getfixturevalue('tmp_path') / 'contexts.db'}"
        else:
            url = str(request.getfixturevalue("pg_url"))
        engine = make_engine(url)
        schema.upgrade(engine)
        store = open_context_store(None, policy=policy, engine=engine)

        def reset() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM context_message")
                conn.exec_driver_sql("DELETE FROM conversation_context")

        yield StoreHandle(store, None, backend, reset)
        engine.dispose()
        return
    url = str(request.getfixturevalue("redis_url" if backend == "redis" else "cluster_url"))
    store = open_context_store(url, policy=policy, prefix=prefix)
    raw = store.client  # type: ignore[attr-defined]
    reset = _flush(raw, prefix)
    reset()
    yield StoreHandle(store, url, backend, reset, raw)
    reset()
    store.close()


@pytest.fixture(params=CONTEXT_BACKENDS)
def handle(request: pytest.FixtureRequest) -> Iterator[StoreHandle]:
    """A fresh context store, once per backend."""
    yield from make_store(request, request.param)
