"""Token budgets, usage and quotas: what they add to a message.

1. Trimming + counting a 100-message context (per message, memo warm as on a user's next
   message, and cold) vs building the request alone (the `messages` list and its JSON body,
   which every call pays anyway).
2. `Orchestrator.handle` p50 on the echo model with usage recording, and with usage plus a
   quota admission, vs the same path with both switched off — on SQLite and on Redis.
   Target from the issue: usage + quota add at most 10% of the handle p50.

Run: python -m bench.budget_usage [--messages 600]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table
from bench.context_redis import redis_client
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, SqlContextStore, open_context_store
from secretaries_core.context.base import Message
from secretaries_core.conversation.budget import fit_history, group_turns
from secretaries_core.conversation.tokens import TokenCounter
from secretaries_core.llm.base import ChatRequest, ChatTurn
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SENTENCE = "Could you move my Tuesday meeting with the design team to Thursday afternoon? "


def history(n: int, salt: str = "") -> list[Message]:
    """`n` messages of realistic length (about 250 characters each)."""
    return [
        Message(
            "user" if i % 2 == 0 else "assistant",
            f"{salt}{i} " + SENTENCE * 3,
            T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def per_call(fn: Callable[[int], object], count: int) -> float:
    """Median seconds of `fn(i)` over `count` calls."""
    samples = []
    for i in range(count):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def trimming_rows(count: int) -> list[Row]:
    """Fit 100 messages vs build the request body for them."""
    rows = []
    messages = history(100)
    turns = group_turns(messages)

    def build(_i: int) -> None:
        request = ChatRequest(
            "alice", "You are Alice.", [ChatTurn(m.role, m.content) for m in messages], ["hi"], {}
        )
        json.dumps({"model": "gpt-4o", "messages": request.messages()})

    baseline = per_call(build, count)
    for label, tokenizer, model in (
        ("tiktoken o200k", "auto", "gpt-4o"),
        ("estimate", "estimate", "llama3"),
    ):
        counter = TokenCounter(tokenizer=tokenizer)
        counter.warm([model])

        def fit(_i: int, counter: TokenCounter = counter, model: str = model) -> None:
            fit_history(
                group_turns(messages),
                counter=counter,
                model=model,
                system="You are Alice.",
                texts=["hi"],
                limit=16_000,
            )

        rows.append(
            Row(
                f"fit 100 messages, {label}, warm",
                per_call(fit, count),
                baseline,
                "build the request body",
            )
        )
        fresh = [history(100, salt=f"{i}-") for i in range(count)]

        def cold(
            i: int,
            counter: TokenCounter = counter,
            model: str = model,
            fresh: list[list[Message]] = fresh,
        ) -> None:
            fit_history(
                group_turns(fresh[i]),
                counter=counter,
                model=model,
                system="You are Alice.",
                texts=["hi"],
                limit=16_000,
            )

        rows.append(
            Row(
                f"fit 100 messages, {label}, cold",
                per_call(cold, count),
                baseline,
                "build the request body",
            )
        )
    del turns
    return rows


def handle_p50(orch: Orchestrator, messages: int, users: int, *, usage: bool) -> float:
    """Median `handle` time over `messages` messages spread over `users` users."""
    if not usage:

        async def nothing(*_args: object, **_kwargs: object) -> None:
            return None

        orch._write_usage = nothing  # type: ignore[method-assign]  # the baseline path
    for u in range(users):  # warm: registration, cache, pool
        orch.handle(10_000 + u, "warm")
    return per_call(lambda i: orch.handle(10_000 + i % users, f"m{i}"), messages)


def handle_rows(
    store_name: str, make_store: Callable[[str], ContextStore], messages: int
) -> list[Row]:
    """p50 with usage (and quota) vs without, on one store."""
    rows = []
    results: dict[str, float] = {}
    for case in ("off", "usage", "usage+quota"):
        with TemporaryDirectory(prefix="secretaries-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'b.db'}"
            engine = make_engine(url)
            schema.upgrade(engine)
            registry = SecretaryRegistry(engine)
            registry.create_secretary(
                AssistantCreate(
                    name="alice",
                    model="echo",
                    prompt="You are Alice.",
                    is_default=True,
                    params={"messages_per_day": 1_000_000} if case == "usage+quota" else {},
                )
            )
            store = make_store(url)
            settings = replace(Settings.load(env={}), context_max_messages=40)
            orch = Orchestrator(registry, store, settings)
            try:
                results[case] = handle_p50(orch, messages, 50, usage=case != "off")
            finally:
                orch.close()
                store.close()
                engine.dispose()
    for case in ("usage", "usage+quota"):
        rows.append(
            Row(
                f"handle p50, {store_name}, {case}",
                results[case],
                results["off"],
                "same path, usage off",
            )
        )
    return rows


def run(messages: int) -> list[Row]:
    """Every row of this benchmark."""
    rows = trimming_rows(300)
    policy = Settings.load(env={}).context_policy

    def sql_store(url: str) -> ContextStore:
        return SqlContextStore(make_engine(url), policy)

    rows += handle_rows("SQLite", sql_store, messages)
    with redis_client() as client:
        kwargs = client.connection_pool.connection_kwargs
        redis_url = f"redis://127.0.0.1:{kwargs['port']}/{kwargs.get('db', 0)}"

        def redis_store(_url: str) -> ContextStore:
            client.flushdb()
            return open_context_store(redis_url, policy=policy)

        rows += handle_rows("Redis", redis_store, messages)
    return rows


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    args = parser.parse_args()
    print_table("token budget, usage and quotas", run(args.messages))


if __name__ == "__main__":
    main()
