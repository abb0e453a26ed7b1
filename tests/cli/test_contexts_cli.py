"""`contexts stats|show|purge` through the CLI, on the database and on Redis / Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from secretaries_cli.app import app
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, Message, open_context_store
from secretaries_core.plumbing.db import make_engine
from tests.cli.conftest import Run, as_json, failed, ok
from tests.servers import free_port


@pytest.fixture(params=["database", "redis", "cluster"])
def context_url(request: pytest.FixtureRequest) -> str | None:
    """Where contexts live for this run of the test."""
    if request.param == "database":
        return None
    return str(request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url"))


@pytest.fixture
def env(
    db_url: str, context_url: str | None
) -> Iterator[tuple[Run, ContextStore, SecretaryRegistry]]:
    """A CLI bound to the database and the context store, with two secretaries and users."""
    engine = make_engine(db_url)
    registry = SecretaryRegistry(engine)
    store = open_context_store(
        context_url, policy=Settings.load().context_policy, engine=engine, prefix="secretaries:"
    )
    wipe(store)
    extra = ["--context-url", context_url] if context_url else []

    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, ["--database-url", db_url, *extra, *args])

    ok(run("create", "alice", "--model", "echo", "--prompt", "A", "--default"))
    ok(run("create", "bob", "--model", "echo", "--prompt", "B"))
    ok(run("users", "add", "1", "--username", "ann"))
    ok(run("users", "add", "2"))
    yield run, store, registry
    wipe(store)
    store.close()
    engine.dispose()


def wipe(store: ContextStore) -> None:
    client = getattr(store, "client", None)
    if client is None:
        store.purge(older_than=timedelta(0))
    elif hasattr(client, "get_primaries"):
        client.flushall(target_nodes=client.PRIMARIES)
    else:
        client.flushdb()


def seed(store: ContextStore, registry: SecretaryRegistry) -> None:
    alice, bob = registry.get_secretary("alice").id, registry.get_secretary("bob").id
    now = datetime.now(UTC)
    store.append(1, alice, Message("user", "hello alice", now, {"chat": 7}))
    store.append(1, alice, Message("assistant", "hi ann", now))
    store.append(1, bob, Message("user", "hello bob", now))
    store.append(2, alice, Message("user", "from two", now))


def test_stats(env) -> None:  # type: ignore[no-untyped-def]
    run, store, registry = env
    assert as_json(run("contexts", "stats", "--json")) == {
        "contexts": 0,
        "messages": 0,
        "by_secretary": {},
    }
    seed(store, registry)
    assert as_json(run("contexts", "stats", "--json")) == {
        "contexts": 3,
        "messages": 4,
        "by_secretary": {
            "alice": {"contexts": 2, "messages": 3},
            "bob": {"contexts": 1, "messages": 1},
        },
    }
    assert "alice" in ok(run("contexts", "stats")).stdout


def test_show(env) -> None:  # type: ignore[no-untyped-def]
    run, store, registry = env
    seed(store, registry)
    doc = as_json(run("contexts", "show", "@ann", "--json"))
    assert doc["user"] == {"telegram_id": 1, "username": "ann"}
    by_name = {c["secretary"]: c for c in doc["contexts"]}
    assert set(by_name) == {"alice", "bob"}
    assert [m["content"] for m in by_name["alice"]["messages"]] == ["hello alice", "hi ann"]
    assert by_name["alice"]["messages"][0]["metadata"] == {"chat": 7}
    only = as_json(run("contexts", "show", "1", "--secretary", "bob", "--json"))
    assert [c["secretary"] for c in only["contexts"]] == ["bob"]
    assert "hello alice" in ok(run("contexts", "show", "1")).stdout
    failed(run("contexts", "show", "99"), 1, "no user 99")
    failed(run("contexts", "show", "1", "--secretary", "carol"), 1, "no secretary")
    failed(run("contexts", "show", "nobody"), 2)


def test_purge(env) -> None:  # type: ignore[no-untyped-def]
    run, store, registry = env
    seed(store, registry)
    assert as_json(run("contexts", "purge", "--user", "@ann", "--dry-run", "--json")) == {
        "purged": 2,
        "dry_run": True,
    }
    assert as_json(run("contexts", "stats", "--json"))["contexts"] == 3
    assert as_json(run("contexts", "purge", "--secretary", "bob", "--json")) == {
        "purged": 1,
        "dry_run": False,
    }
    assert as_json(run("contexts", "purge", "--json")) == {"purged": 0, "dry_run": False}
    time.sleep(1.1)
    assert (
        as_json(run("contexts", "purge", "--older-than", "1s", "--dry-run", "--json"))["purged"]
        == 2
    )
    assert "Purged 2" in ok(run("contexts", "purge", "--older-than", "1s")).stdout
    assert as_json(run("contexts", "stats", "--json"))["contexts"] == 0


@pytest.mark.parametrize("duration", ["0s", "1x", "-5m", "m", "7 days"])
def test_bad_duration_exits_2_and_deletes_nothing(env, duration: str) -> None:  # type: ignore[no-untyped-def]
    run, store, registry = env
    seed(store, registry)
    failed(run("contexts", "purge", "--older-than", duration), 2)
    assert store.stats().contexts == 3


def test_purge_refusals_delete_nothing(env) -> None:  # type: ignore[no-untyped-def]
    run, store, registry = env
    seed(store, registry)
    failed(run("contexts", "purge", "--user", "99"), 1, "no user")
    failed(run("contexts", "purge", "--secretary", "carol"), 1, "no secretary")
    failed(run("contexts", "purge", "--user", "abc"), 2)
    assert store.stats().contexts == 3


def test_unreachable_context_store_exits_3(cli: Run) -> None:
    for url in (
        f"redis://:topsecret@127.0.0.1:{free_port()}/0",
        f"redis+cluster://:topsecret@127.0.0.1:{free_port()}",
    ):
        for args in (["contexts", "stats"], ["contexts", "purge", "--dry-run"]):
            result = cli("--context-url", url, *args)
            failed(result, 3, "***")
            assert "topsecret" not in result.stderr


def test_unknown_context_scheme(cli: Run) -> None:
    failed(
        cli("--context-url", "memcached://host", "contexts", "stats"), 1, "unknown context store"
    )
