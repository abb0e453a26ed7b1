"""The message path at load: 1,000 users x 1 message at once against a 1.0 s model.

Also the same burst with 50 earlier turns per user (100 stored messages each), and steady
traffic: 200 users x 10 messages, each sent after the previous reply, a 200 ms model,
Redis contexts, vs a bare aiohttp loop sending the same growing bodies in the same order.

Floors measured in the same run against the same loopback server (its own process):
- the bare `openai` SDK (`AsyncOpenAI`, aiohttp transport, the fastest it has) making the
  same 1,000 calls, and the SDK on its default httpx transport;
- a bare aiohttp POST loop (no SDK);
- the ideal: the model's latency, 1.0 s.
Ours: `Orchestrator.ahandle` for 1,000 registered users on SQLite and on Redis.
Also time to the first streamed piece vs the server's own first byte.

Run: python -m bench.message_path [--users 1000] [--latency 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table
from bench.context_redis import redis_client
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore, SqlContextStore, open_context_store
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import llm_server_process

BODY = {
    "model": "m",
    "messages": [{"role": "system", "content": "p"}, {"role": "user", "content": "hi"}],
}


def peak(base_v1: str, reset: bool = False) -> int:
    """The server's peak of requests in flight (reset to 0 with `reset`)."""
    url = base_v1.removesuffix("/v1") + "/peak"
    request = urllib.request.Request(url, method="DELETE" if reset else "GET")
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(json.load(response)["peak_in_flight"])


def burst(base: str, calls: Callable[[], Awaitable[object]]) -> tuple[float, int]:
    """Wall time of one burst and the peak in flight it reached at the server."""
    peak(base, reset=True)
    start = time.perf_counter()
    asyncio.run(_awaited(calls()))
    return time.perf_counter() - start, peak(base)


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


def sdk_burst(base: str, users: int, transport: str) -> tuple[float, int]:
    """The bare SDK making `users` calls at once."""
    import openai

    try:
        import httpx2 as httpx_module
    except ImportError:  # older SDKs
        import httpx as httpx_module  # type: ignore[no-redef]

    async def calls() -> None:
        limits = httpx_module.Limits(max_connections=users, max_keepalive_connections=users)
        http = (
            openai.DefaultAioHttpClient(limits=limits)
            if transport == "aiohttp"
            else openai.DefaultAsyncHttpxClient(limits=limits)
        )
        client = openai.AsyncOpenAI(base_url=base, api_key="x", http_client=http, max_retries=0)
        await asyncio.gather(
            *(
                client.chat.completions.create(model="m", messages=BODY["messages"])
                for _ in range(users)
            )  # type: ignore[arg-type]
        )
        await client.close()

    return burst(base, calls)


def aiohttp_burst(base: str, users: int) -> tuple[float, int]:
    """Bare aiohttp POSTs, no SDK."""
    import aiohttp

    async def calls() -> None:
        connector = aiohttp.TCPConnector(limit=users)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> None:
                async with session.post(f"{base}/chat/completions", json=BODY) as response:
                    await response.json()

            await asyncio.gather(*(one() for _ in range(users)))

    return burst(base, calls)


def orchestrator_burst(
    base: str, users: int, registry: SecretaryRegistry, store: ContextStore, settings: Settings
) -> tuple[float, int]:
    """`ahandle` for `users` registered users at once (the steady state of a bot)."""
    orch = Orchestrator(registry, store, replace(settings, openai_base_url=base))

    async def calls() -> None:
        await asyncio.gather(*(orch.ahandle(1 + u, f"hello {u}") for u in range(users)))
        await orch.aclose()

    return burst(base, calls)


def first_piece(
    base: str, registry: SecretaryRegistry, store: ContextStore, settings: Settings, runs: int = 20
) -> tuple[float, float]:
    """Median time to the first streamed piece: ours vs the bare SDK's first chunk."""
    import openai

    orch = Orchestrator(registry, store, replace(settings, openai_base_url=base))

    async def measure() -> tuple[float, float]:
        client = openai.AsyncOpenAI(
            base_url=base, api_key="x", http_client=openai.DefaultAioHttpClient()
        )
        ours, bare = [], []
        for i in range(runs):
            start = time.perf_counter()
            stream = await client.chat.completions.create(
                model="m", messages=BODY["messages"], stream=True
            )  # type: ignore[arg-type]
            async for _chunk in stream:
                bare.append(time.perf_counter() - start)
                break
            await stream.close()
            start = time.perf_counter()
            async for _piece in orch.astream(5000 + i, "stream"):
                ours.append(time.perf_counter() - start)
                break
        await client.close()
        await orch.aclose()
        return sorted(ours)[runs // 2], sorted(bare)[runs // 2]

    return asyncio.run(measure())


def steady(
    base: str,
    users: int,
    per_user: int,
    registry: SecretaryRegistry,
    store: ContextStore,
    settings: Settings,
) -> tuple[float, float]:
    """Steady traffic: every user sends `per_user` messages, each after the last reply.

    Ours: `ahandle` (contexts grow to 2 x `per_user` messages). Baseline: a bare aiohttp
    loop sending the same growing bodies in the same per-user order.
    """
    import aiohttp

    orch = Orchestrator(registry, store, replace(settings, openai_base_url=base))

    async def ours() -> None:
        async def user(u: int) -> None:
            for i in range(per_user):
                await orch.ahandle(1 + u, f"message {i} from user {u}, a few words long")

        await asyncio.gather(*(user(u) for u in range(users)))
        await orch.aclose()

    async def bare() -> None:
        connector = aiohttp.TCPConnector(limit=users)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def user(u: int) -> None:
                history: list[dict[str, str]] = [{"role": "system", "content": "p"}]
                for i in range(per_user):
                    history.append(
                        {"role": "user", "content": f"message {i} from user {u}, a few words long"}
                    )
                    body = {"model": "m", "messages": history}
                    async with session.post(f"{base}/chat/completions", json=body) as response:
                        reply = await response.json()
                    history.append(
                        {"role": "assistant", "content": reply["choices"][0]["message"]["content"]}
                    )

            await asyncio.gather(*(user(u) for u in range(users)))

    return burst(base, bare)[0], burst(base, ours)[0]


def seed_history(store: ContextStore, registry: SecretaryRegistry, users: int, turns: int) -> None:
    """Give every user `turns` earlier turns with the default secretary."""
    from secretaries_core.context.base import Message
    from secretaries_core.plumbing.timeutil import utcnow

    sid = registry.get_secretary("alice").id
    now = utcnow()
    store.append_many(
        (1 + u, sid, Message(role, f"earlier {role} message {t} of user {u}", now))
        for u in range(users)
        for t in range(turns)
        for role in ("user", "assistant")
    )


def prepare(url: str, users: int) -> SecretaryRegistry:
    """A migrated database with one default secretary on the model server and `users` users."""
    engine = make_engine(url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt="p", is_default=True)
    )
    from secretaries_core.catalog.users_csv import UserRow

    registry.import_users([UserRow(telegram_id=1 + u, username=None) for u in range(users)])
    return registry


PARTS = ("burst", "steady", "stream")


@contextmanager
def redis_store(settings: Settings, prefix: str) -> Iterator[ContextStore]:
    """A Redis context store on the benchmark's Redis, under `prefix`, closed after."""
    with redis_client() as client:
        kwargs = client.connection_pool.connection_kwargs
        store = open_context_store(
            f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}",
            policy=settings.context_policy,
            prefix=prefix,
        )
        try:
            yield store
        finally:
            store.close()


def run(
    users: int, latency: float, steady_users: int = 200, parts: tuple[str, ...] = PARTS
) -> list[Row]:
    """Every row of the table (of the `parts` asked for)."""
    rows: list[Row] = []
    settings = replace(Settings.load(env={}), model_max_retries=0, model_timeout_seconds=60)
    if "burst" in parts:
        rows += _bursts(users, latency, settings)
    if "steady" in parts:
        rows += _steady_rows(steady_users, settings)
    if "stream" in parts:
        rows += _stream_rows(settings)
    return rows


def _bursts(users: int, latency: float, settings: Settings) -> list[Row]:
    rows: list[Row] = []
    with llm_server_process(latency) as base, TemporaryDirectory() as tmp:
        sdk_fast, sdk_fast_peak = sdk_burst(base, users, "aiohttp")
        sdk_httpx, sdk_httpx_peak = sdk_burst(base, users, "httpx")
        bare, bare_peak = aiohttp_burst(base, users)
        registry = prepare(f"sqlite:///{Path(tmp) / 'bench.db'}", users)
        sql = SqlContextStore(registry.engine, settings.context_policy)
        ours_sql, ours_sql_peak = orchestrator_burst(base, users, registry, sql, settings)
        with redis_store(settings, "bench:") as redis:
            ours_redis, ours_redis_peak = orchestrator_burst(base, users, registry, redis, settings)
        n = f"{users:,}"
        rows += [
            Row(
                f"SDK httpx transport, {n} at once (peak {sdk_httpx_peak})",
                sdk_httpx,
                sdk_fast,
                "bare SDK, aiohttp transport",
            ),
            Row(
                f"bare SDK aiohttp, {n} at once (peak {sdk_fast_peak})",
                sdk_fast,
                bare,
                "bare aiohttp POSTs",
            ),
            Row(
                f"bare aiohttp POSTs, {n} at once (peak {bare_peak})",
                bare,
                latency,
                f"ideal: the model's {latency:g} s",
            ),
            Row(
                f"ahandle SQLite, {n} users at once (peak {ours_sql_peak})",
                ours_sql,
                sdk_fast,
                "bare SDK, aiohttp transport",
            ),
            Row(
                f"ahandle Redis, {n} users at once (peak {ours_redis_peak})",
                ours_redis,
                sdk_fast,
                "bare SDK, aiohttp transport",
            ),
        ]
        # The same burst, every user with 50 earlier turns (100 stored messages).
        registry = prepare(f"sqlite:///{Path(tmp) / 'history.db'}", users)
        sql = SqlContextStore(registry.engine, settings.context_policy)
        seed_history(sql, registry, users, 50)
        ours_history, peak_history = orchestrator_burst(base, users, registry, sql, settings)
        rows.append(
            Row(
                f"ahandle SQLite, {n} users with 50 earlier turns (peak {peak_history})",
                ours_history,
                sdk_fast,
                "bare SDK, aiohttp transport (short requests)",
            )
        )
        registry.engine.dispose()
    return rows


def _steady_rows(steady_users: int, settings: Settings) -> list[Row]:
    rows: list[Row] = []
    with llm_server_process(0.2) as base, TemporaryDirectory() as tmp:
        # Steady traffic: 200 users x 10 messages, a 200 ms model, per-user order.
        registry = prepare(f"sqlite:///{Path(tmp) / 'steady.db'}", steady_users)
        with redis_store(settings, "steady:") as redis:
            bare_steady, ours_steady = steady(base, steady_users, 10, registry, redis, settings)
        rows.append(
            Row(
                f"steady: {steady_users} users x 10 messages, 200 ms model, Redis",
                ours_steady,
                bare_steady,
                "bare aiohttp, same bodies, same order",
            )
        )
        sql = SqlContextStore(registry.engine, settings.context_policy)
        bare_steady, ours_steady = steady(base, steady_users, 10, registry, sql, settings)
        sql.close()
        rows.append(
            Row(
                f"steady: {steady_users} users x 10 messages, 200 ms model, SQLite",
                ours_steady,
                bare_steady,
                "bare aiohttp, same bodies, same order",
            )
        )
        registry.engine.dispose()
    return rows


def _stream_rows(settings: Settings) -> list[Row]:
    rows: list[Row] = []
    with llm_server_process(0.05, chunk_delay=0.05) as base, TemporaryDirectory() as tmp:
        registry = prepare(f"sqlite:///{Path(tmp) / 'stream.db'}", 0)
        sql = SqlContextStore(registry.engine, settings.context_policy)
        ours, bare_first = first_piece(base, registry, sql, settings)
        rows.append(Row("astream: first piece (SQLite)", ours, bare_first, "bare SDK first chunk"))
        registry.engine.dispose()
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--parts", default=",".join(PARTS), help="burst, steady, stream")
    args = parser.parse_args()
    print_table(
        "Message path (model latency in the row names' server)",
        run(args.users, args.latency, parts=tuple(args.parts.split(","))),
    )


if __name__ == "__main__":
    main()
