"""Orchestrator overhead per message with the `echo` model, and instance-mode memory.

- per message: `Orchestrator.handle` vs the bare context-store calls it makes (one read,
  one two-message append), on the embedded default (SQLite) and on Redis, p50 / p99;
- `ahandle` throughput with 100 concurrent asyncio tasks;
- memory (tracemalloc) of the instance pool after 100,000 users: `shared` vs `per-user`.

Run: python -m bench.orchestrator [--messages 3000] [--users 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table
from bench.context_redis import redis_client
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, Message, SqlContextStore, open_context_store
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in seconds."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def sample(fn: Callable[[int], object], count: int) -> list[float]:
    """Per-call wall times of fn(i) for i in range(count)."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return times


def overhead_rows(
    label: str, registry: SecretaryRegistry, store: ContextStore, settings: Settings, messages: int
) -> list[Row]:
    """handle() vs the bare read + append_many it performs, same users, same sizes."""
    orch = Orchestrator(registry, store, settings)
    sec = registry.get_secretary("alice").id
    users = 200
    for u in range(users):  # register and warm the caches outside the timing
        orch.handle(10_000 + u, "warm up")
        store.purge(user_id=20_000 + u)

    def bare(i: int) -> None:
        user = 20_000 + i % users
        history = store.read(user, sec)
        at = datetime.now(UTC)
        reply = f"[alice] message {i} (context: {len(history)} messages)"
        store.append_many(
            [
                (user, sec, Message("user", f"message {i}", at)),
                (user, sec, Message("assistant", reply, at)),
            ]
        )

    def ours(i: int) -> None:
        orch.handle(10_000 + i % users, f"message {i}")

    base = sample(bare, messages)
    mine = sample(ours, messages)
    orch.close()
    (b50, b99), (m50, m99) = percentiles(base), percentiles(mine)
    return [
        Row(f"{label}: handle p50 ({m50 * 1e3:.2f} ms)", m50, b50, "read + append, p50"),
        Row(f"{label}: handle p99 ({m99 * 1e3:.2f} ms)", m99, b99, "read + append, p99"),
    ]


def ahandle_row(
    label: str, registry: SecretaryRegistry, store: ContextStore, settings: Settings, messages: int
) -> Row:
    """100 asyncio tasks sharing `messages` messages vs the same number through handle()."""
    orch = Orchestrator(registry, store, settings)
    tasks = 100
    per_task = max(1, messages // tasks)

    async def run() -> None:
        async def one(task: int) -> None:
            for i in range(per_task):
                await orch.ahandle(30_000 + task, f"m{i}")

        await asyncio.gather(*(one(t) for t in range(tasks)))

    start = time.perf_counter()
    asyncio.run(run())
    concurrent = time.perf_counter() - start
    start = time.perf_counter()
    for t in range(tasks):
        for i in range(per_task):
            orch.handle(40_000 + t, f"m{i}")
    serial = time.perf_counter() - start
    orch.close()
    total = tasks * per_task
    return Row(
        f"{label}: ahandle x100 tasks ({total / concurrent:,.0f} msg/s)",
        concurrent,
        serial,
        "same messages, serial handle()",
    )


def memory_rows(
    registry: SecretaryRegistry, store: ContextStore, settings: Settings, users: int
) -> list[Row]:
    """Pool memory after `users` users: shared vs per-user (capacity 1,000 and unbounded)."""
    found = registry.resolve(10_000)
    from secretaries_core.orchestrator import snapshot

    secretary = snapshot(found.secretary)
    results = {}
    for name, mode, capacity in (
        ("shared", "shared", 1000),
        ("per-user cap 1,000", "per-user", 1000),
        ("per-user unbounded", "per-user", users + 1),
    ):
        orch = Orchestrator(
            registry, store, replace(settings, instance_mode=mode, pool_capacity=capacity)
        )
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter()
        for user in range(users):
            orch.instance_for(secretary, user)
        elapsed = time.perf_counter() - start
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        results[name] = (used, elapsed, len(orch.pool))
        orch.close()
    shared_t = results["shared"][1]
    rows = []
    for name, (used, elapsed, size) in results.items():
        rows.append(
            Row(
                f"pool, {users:,} users, {name}: {used / 1e6:.1f} MB, {size:,} inst.",
                elapsed,
                shared_t,
                "shared-mode lookups (time)",
            )
        )
    return rows


def setup(url: str) -> tuple[SecretaryRegistry, Settings]:
    """A migrated database with one default echo secretary."""
    engine = make_engine(url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(name="alice", model="echo", prompt="p", is_default=True)
    )
    return registry, Settings.load(env={})


def run(messages: int, users: int) -> list[Row]:
    """Every row of the table."""
    rows: list[Row] = []
    with TemporaryDirectory() as tmp:
        registry, settings = setup(f"sqlite:///{Path(tmp) / 'bench.db'}")
        sql = SqlContextStore(registry.engine, settings.context_policy)
        rows += overhead_rows("embedded SQLite", registry, sql, settings, messages)
        rows.append(ahandle_row("embedded SQLite", registry, sql, settings, messages))
        with redis_client() as client:
            # Opened from its URL, as in production: async client for ahandle included.
            kwargs = client.connection_pool.connection_kwargs
            redis = open_context_store(
                f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}",
                policy=settings.context_policy,
                prefix=f"b{uuid.uuid4().hex[:4]}:",
            )
            rows += overhead_rows("Redis", registry, redis, settings, messages)
            rows.append(ahandle_row("Redis", registry, redis, settings, messages))
            redis.close()
        rows += memory_rows(registry, sql, settings, users)
        registry.engine.dispose()
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    print_table("Orchestrator (echo model)", run(args.messages, args.users))


if __name__ == "__main__":
    main()
