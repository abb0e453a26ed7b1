"""CPU per message as the conversation grows: `ahandle` vs a bare aiohttp POST of the same body.

The model double runs in its own process, so only this process's CPU counts. For contexts
of 2, 20, 100 and 200 stored messages (users whose conversations already hold that many,
`SECRETARIES_CONTEXT_MAX_MESSAGES` set to the size so the context stays there), on the
embedded SQLite store and on Redis (with remembered contexts, and `Redis-reads`: reading
every context from Redis as before): CPU seconds per `Orchestrator.ahandle` (resolution,
context read, token fitting, the model call, the turn write, usage), one message at a time
over USERS users, the best of 5 rounds. Baseline in the same run: a bare aiohttp POST of
the same request body (system prompt, that history, the new message) to the same server,
the JSON response read.

Targets: ≤ 3x the bare POST at 100 messages, and the 100-message figure ≤ 1.3x the
2-message one.

Run: python -m bench.message_cpu [--calls 200] [--users 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp

from bench.common import Row, print_table
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, SqlContextStore, open_context_store
from secretaries_core.context.base import Message
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.plumbing.timeutil import utcnow
from tests.llm_server import llm_server_process
from tests.servers import redis_server, tls_redis_server

SIZES = (2, 20, 100, 200)
PROMPT = "You are alice, a helpful secretary who answers briefly."


def _line(i: int) -> str:
    return f"message {i}: " + "some words of a realistic length in a chat " * 3


def _prepare(tmp: Path, users: int) -> SecretaryRegistry:
    engine = make_engine(f"sqlite:///{tmp / f'cpu-{time.monotonic_ns()}.db'}")
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt=PROMPT, is_default=True)
    )
    from secretaries_core.catalog.users_csv import UserRow

    registry.import_users([UserRow(telegram_id=1 + u, username=None) for u in range(users)])
    return registry


def _fill(store: ContextStore, registry: SecretaryRegistry, users: int, size: int) -> None:
    sid = registry.get_secretary("alice").id
    now = utcnow()
    store.append_many(
        (1 + u, sid, Message("user" if i % 2 == 0 else "assistant", _line(i), now))
        for u in range(users)
        for i in range(size)
    )


ROUNDS = 5


async def _ours(orch: Orchestrator, users: int, calls: int) -> float:
    for u in range(users):  # warm: pools, caches, the first connection
        await orch.ahandle(1 + u, "warm up")
    # The best of ROUNDS rounds: CPU figures of a shared 2-core machine only ever err up.
    best = float("inf")
    per_round = max(1, calls // ROUNDS)
    for r in range(ROUNDS):
        started = time.process_time()
        for i in range(r * per_round, (r + 1) * per_round):
            await orch.ahandle(1 + i % users, _line(i))
        best = min(best, (time.process_time() - started) / per_round)
    return best


async def _bare(base: str, size: int, calls: int) -> float:
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": _line(i)} for i in range(size)
    ]
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            body = {
                "model": "m",
                "messages": [
                    {"role": "system", "content": PROMPT},
                    *history,
                    {"role": "user", "content": _line(i)},
                ],
            }
            async with session.post(f"{base}/chat/completions", json=body) as response:
                await response.json()

        await one(0)
        best = float("inf")
        per_round = max(1, calls // ROUNDS)
        for r in range(ROUNDS):
            started = time.process_time()
            for i in range(r * per_round, (r + 1) * per_round):
                await one(i)
            best = min(best, (time.process_time() - started) / per_round)
        return best


def run(
    calls: int = 200,
    users: int = 20,
    sizes: tuple[int, ...] = SIZES,
    kinds: tuple[str, ...] = ("SQLite", "Redis"),
) -> list[Row]:
    """One row per (store, size): CPU per message, ours vs the bare POST of the same body."""
    rows: list[Row] = []
    with (
        llm_server_process(0.0) as base,
        TemporaryDirectory() as tmp,
        ExitStack() as stack,
    ):
        # One server for every kind; a TLS port too when a TLS kind is asked for.
        urls: dict[str, str] = {}
        if any(kind.endswith("-tls") for kind in kinds):
            port, urls["Redis-tls"] = stack.enter_context(tls_redis_server(Path(tmp)))
        else:
            port, _root = stack.enter_context(redis_server())
        urls["Redis"] = f"redis://127.0.0.1:{port}/0"
        for size in sizes:
            settings = replace(
                Settings.load(env={}),
                openai_base_url=base,
                model_max_retries=0,
                context_max_messages=size,
                max_context_tokens=1_000_000,
            )
            bare = asyncio.run(_bare(base, size, calls))
            for kind in kinds:
                registry = _prepare(Path(tmp), users)
                store: ContextStore = (
                    SqlContextStore(registry.engine, settings.context_policy)
                    if kind == "SQLite"
                    else open_context_store(
                        urls[kind.removesuffix("-reads")],
                        policy=settings.context_policy,
                        prefix=f"cpu{size}{kind}:",
                        # *-reads: every context read from Redis (no tracked lane).
                        remember=not kind.endswith("-reads"),
                    )
                )
                _fill(store, registry, users, size)
                orch = Orchestrator(registry, store, settings)

                async def measure(orch: Orchestrator = orch) -> float:
                    try:
                        return await _ours(orch, users, calls)
                    finally:
                        await orch.aclose()

                ours = asyncio.run(measure())
                store.close()
                registry.engine.dispose()
                rows.append(
                    Row(f"ahandle CPU, {kind}, {size} messages", ours, bare, "bare aiohttp POST")
                )
    return rows


def main() -> None:
    """Print the table, and the growth from 2 to 100 messages per store."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="e.g. 2,100")
    parser.add_argument(
        "--stores",
        default="SQLite,Redis,Redis-reads",
        help="any of SQLite, Redis, Redis-reads (Redis without remembered contexts), "
        "Redis-tls, Redis-tls-reads (the same over TLS)",
    )
    args = parser.parse_args()
    sizes = tuple(int(size) for size in args.sizes.split(","))
    rows = run(args.calls, args.users, sizes, tuple(args.stores.split(",")))
    print_table("CPU per message vs the length of the conversation", rows)
    for kind in ("SQLite", "Redis", "Redis-reads", "Redis-tls", "Redis-tls-reads"):
        by_size = {
            int(r.name.split(", ")[2].split()[0]): r.ours
            for r in rows
            if r.name.split(", ")[1] == kind
        }
        if 2 in by_size and 100 in by_size:
            print(f"{kind}: 100 messages cost {by_size[100] / by_size[2]:.2f}x 2 messages")


if __name__ == "__main__":
    main()
