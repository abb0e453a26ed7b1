"""The webhook's latency and throughput vs a bare aiohttp handler that does one XADD.

Both run as their own process on loopback against one private Redis, in this run. The
webhook is `secretaries serve` with the queue, the bot token and the secret, taking text
messages of 1,000 users (each `update_id` once: the dedupe key, the queue's script and the
"typing" action included); Telegram's side is the Bot API double. Two loads, each against
both: updates sent at a fixed rate (`--rate`, default 500/s, for `--seconds`) for p50/p99,
and `--clients` updates in flight for the most updates per second.

Run: python -m bench.webhook [--rate 500] [--seconds 10] [--clients 64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aiohttp

from bench.api import running
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.servers import free_port, redis_server
from tests.telegram.bot_api import TOKEN, bot_api

SECRET = "bench-webhook-secret"
_ids = itertools.count(1)


def _update(user: int) -> dict[str, Any]:
    update_id = next(_ids)
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "U", "username": f"u{user}"},
            "text": f"message {update_id}: what is on my calendar tomorrow afternoon?",
        },
    }


async def _post(session: aiohttp.ClientSession, url: str) -> float:
    body = _update(1 + next(_ids) % 1000)
    start = time.perf_counter()
    async with session.post(
        url, json=body, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    ) as r:
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {await r.text()}")
        await r.read()
    return time.perf_counter() - start


async def at_rate(url: str, rate: float, seconds: float) -> list[float]:
    """Latencies of updates sent every 1/rate s (open loop: a slow answer delays none)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(50):  # warm up connections and caches
            await _post(session, url)
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(_post(session, url)))
        return list(await asyncio.gather(*tasks))


async def flat_out(url: str, clients: int, seconds: float) -> float:
    """Updates per second with `clients` in flight."""
    done = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await _post(session, url)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return done / (time.perf_counter() - start)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    """Run both servers, both loads; print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    with (
        TemporaryDirectory() as tmp,
        redis_server() as (redis_port, _),
        bot_api() as (api_url, _api),
    ):
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(db_url)
        schema.upgrade(engine)
        SecretaryRegistry(engine).create_secretary(
            AssistantCreate(name="alice", model="openai/m", prompt="p", is_default=True)
        )
        engine.dispose()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update(
            SECRETARIES_HOME=tmp,
            SECRETARIES_DATABASE_URL=db_url,
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_TELEGRAM_TOKEN=TOKEN,
            SECRETARIES_TELEGRAM_API_URL=api_url,
            SECRETARIES_TELEGRAM_WEBHOOK_SECRET=SECRET,
        )
        ours_port, bare_port = free_port(), free_port()
        serve = [sys.executable, "-m", "secretaries_cli", "serve", "--no-auth"]
        bare = [sys.executable, "-m", "bench.bare_webhook", str(bare_port), redis_url]
        with (
            running([*serve, "--port", str(ours_port)], ours_port, env, "/healthz") as ours,
            running(bare, bare_port, env, "/healthz") as baseline,
        ):
            results = {}
            for name, url in (
                ("webhook", f"{ours}/telegram/webhook"),
                ("bare", f"{baseline}/hook"),
            ):
                latencies = asyncio.run(at_rate(url, args.rate, args.seconds))
                rate = asyncio.run(flat_out(url, args.clients, args.seconds))
                results[name] = (_pct(latencies, 50), _pct(latencies, 99), rate)
    (p50, p99, rate), (b50, b99, brate) = results["webhook"], results["bare"]
    print(
        f"\nwebhook vs bare aiohttp + one XADD, {args.rate:.0f} updates/s for {args.seconds:.0f} s"
    )
    print(f"{'':<16}{'webhook':>12}{'bare':>12}{'ratio':>8}")
    print(f"{'p50 (ms)':<16}{p50 * 1e3:>12.2f}{b50 * 1e3:>12.2f}{p50 / b50:>7.2f}x")
    print(f"{'p99 (ms)':<16}{p99 * 1e3:>12.2f}{b99 * 1e3:>12.2f}{p99 / b99:>7.2f}x")
    print(f"{'updates/s':<16}{rate:>12.0f}{brate:>12.0f}{brate / rate:>7.2f}x (bare / ours)")


if __name__ == "__main__":
    main()
