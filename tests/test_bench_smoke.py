"""Every benchmark runs once on a tiny data set so that none of them can rot."""

from __future__ import annotations

import pytest

from bench import (
    api,
    context_redis,
    context_sql,
    instances,
    message_cpu,
    message_path,
    migrate_users,
    orchestrator,
    resolution,
    startup,
    telegram,
    tool_call,
)


def test_migrate_users_bench_runs(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARIES_BENCH_POSTGRES_URL", pg_admin_url)
    rows = migrate_users.run(users=300, batch_size=70, backends=["sqlite", "postgresql"])
    assert [r.name.split(":")[0] for r in rows] == ["sqlite", "postgresql"]
    assert all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_context_redis_bench_runs(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARIES_BENCH_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/1")
    rows = context_redis.run(contexts=2_000, appends=50)
    assert len(rows) == 4 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_message_cpu_bench_runs() -> None:
    kinds = ("SQLite", "Redis", "Redis-reads", "Redis-tls")
    rows = message_cpu.run(calls=5, users=2, sizes=(2,), kinds=kinds)
    assert [r.name.split(", ")[1] for r in rows] == list(kinds)
    assert all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_orchestrator_bench_runs(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARIES_BENCH_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/3")
    rows = orchestrator.run(messages=100, users=300)
    assert len(rows) == 9 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_api_bench_runs() -> None:
    rows = api.run(clients=4, seconds=0.5, users=20)
    assert len(rows) == 1 and rows[0].ours > 0 and rows[0].baseline > 0


def test_resolution_bench_runs() -> None:
    rows = resolution.run(lookups=200, queries=20)
    assert len(rows) == 3 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_context_sql_bench_runs() -> None:
    rows = context_sql.run(ops=20, contexts=200)
    assert len(rows) == 6 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_instances_bench_runs() -> None:
    rows = instances.run([100, 1500])
    assert len(rows) == 3 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_startup_bench_runs() -> None:
    rows = startup.run(runs=1, only="db current")
    assert [r.name for r in rows] == ["db current --help", "db current --json"]
    assert all(r.ours > 0 for r in rows)


def test_message_path_bench_runs(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARIES_BENCH_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/4")
    rows = message_path.run(users=20, latency=0.05, steady_users=5)
    assert len(rows) == 9 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_budget_usage_bench_runs(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import budget_usage

    monkeypatch.setenv("SECRETARIES_BENCH_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/5")
    rows = budget_usage.run(messages=20)
    assert len(rows) == 8 and all(r.ours > 0 and r.baseline > 0 for r in rows)


@pytest.mark.long
@pytest.mark.xdist_group("telegram-scale")
def test_telegram_bench_runs() -> None:
    rows = telegram.run(messages=2, chats=40)
    assert len(rows) == 2 and all(r.ours > 0 and r.baseline > 0 for r in rows)


def test_tool_call_bench_runs() -> None:
    rows, walls, paired = tool_call.run(calls=8, spells=2)
    assert len(rows) == 12 and all(r.baseline > 0 for r in rows)
    assert len(walls["bare"]) == 4  # 2 spells of 4 messages, every other one with a round
    assert len(paired) == 4 and all(len(ratios) == 2 for ratios in paired.values())
