"""The bot's flood control against a real Redis, shared by two "processes" (two clients).

Each `RedisFlood` below has its own connection, as two bot processes of one token would;
what one takes, the other sees.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import redis.asyncio as aioredis

from secretaries_core.plumbing.metrics import Metrics
from secretaries_telegram.flood import FloodLimits, LocalFlood, RedisFlood

LIMITS = FloodLimits(bot_per_second=30, chat_per_second=1, group_per_minute=20)


def _max_in_window(times: list[float], span: float) -> int:
    times = sorted(times)
    return max(
        (sum(1 for t in times[i:] if t < start + span) for i, start in enumerate(times)), default=0
    )


async def _two(redis_url: str) -> tuple[RedisFlood, RedisFlood, list[aioredis.Redis]]:
    prefix = f"fl{uuid.uuid4().hex[:6]}:tg:{{f1}}:"
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    return (
        RedisFlood(clients[0], prefix, LIMITS, Metrics()),
        RedisFlood(clients[1], prefix, LIMITS, Metrics()),
        clients,
    )


def test_two_processes_share_the_bot_and_chat_limits(redis_url: str) -> None:
    async def main() -> None:
        a, b, clients = await _two(redis_url)
        granted: list[float] = []
        per_chat: dict[int, list[float]] = {}

        async def send(flood: RedisFlood, chat: int) -> None:
            await flood.take_final(chat)
            now = time.monotonic()
            granted.append(now)
            per_chat.setdefault(chat, []).append(now)

        started = time.monotonic()
        # 90 finals over 60 chats (some chats get two), half through each process.
        chats = list(range(1, 61)) + list(range(1, 31))
        await asyncio.gather(*(send(a if i % 2 else b, c) for i, c in enumerate(chats)))
        took = time.monotonic() - started
        assert _max_in_window(granted, 1.0) <= 30
        assert took >= 2.0  # 90 sends at 30/s cannot take less
        for times in per_chat.values():
            assert all(y - x >= 1.0 for x, y in itertools.pairwise(sorted(times)))
        for c in clients:
            await c.aclose()

    asyncio.run(main())


def test_drafts_give_way_to_finals_and_a_429_holds_every_process(redis_url: str) -> None:
    async def main() -> None:
        a, b, clients = await _two(redis_url)
        chat = 777
        assert await a.take_intermediate(chat)
        # The chat's slot is used: the next draft is skipped, not queued ...
        assert not await b.take_intermediate(chat)
        # ... and once a final waits for the chat, drafts give way to it.
        final = asyncio.ensure_future(b.take_final(chat))
        await asyncio.sleep(0.3)
        assert not final.done()
        await asyncio.sleep(1.1)  # past the chat's window: still no draft before the final
        assert not await a.take_intermediate(chat) or final.done()
        waited = await final
        assert 0.9 < waited < 2.5
        # Telegram said 429 with retry_after 2 to process a: process b waits too.
        await a.hold(5, 2.0)
        started = time.monotonic()
        await b.take_final(5)
        assert time.monotonic() - started >= 1.8
        for c in clients:
            await c.aclose()

    asyncio.run(main())


def test_group_limit_per_minute(redis_url: str) -> None:
    async def main() -> None:
        limits = FloodLimits(bot_per_second=30, chat_per_second=30, group_per_minute=5)
        prefix = f"fl{uuid.uuid4().hex[:6]}:tg:{{f2}}:"
        client = aioredis.Redis.from_url(redis_url)
        flood = RedisFlood(client, prefix, limits, Metrics())
        group = -42
        for _ in range(5):
            assert await flood.take_final(group) < 0.5
        assert not await flood.take_intermediate(group)
        cause, wait = await flood._try(group, True, False)
        assert cause != 0 and 50 < wait <= 61.1, (cause, wait)
        # Another chat is not held up by that group.
        assert await flood.take_final(43) < 0.2
        await client.aclose()

    asyncio.run(main())


def test_redis_away_the_process_limits_itself(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        flood = RedisFlood(client, "x:", LIMITS, Metrics())
        started = time.monotonic()
        await flood.take_final(1)
        await flood.take_final(1)  # same chat: the local window makes it wait ~1.25 s
        assert 1.0 < time.monotonic() - started < 3.0
        await client.aclose()

    asyncio.run(main())


def test_local_flood_keeps_the_reserve_for_finals() -> None:
    async def main() -> None:
        flood = LocalFlood(FloodLimits(bot_per_second=6, final_reserve=2), Metrics())
        drafts = []
        for chat in range(1, 7):
            drafts.append(await flood.take_intermediate(chat))
            await asyncio.sleep(0.17)  # evenly paced: at most one every 1/6 s
        assert drafts.count(True) == 4  # 6 a second, 2 of them kept for finals
        waited = [await flood.take_final(chat) for chat in range(20, 22)]
        assert all(w < 0.25 for w in waited), waited  # the pace only, no full window

    asyncio.run(main())


def test_redis_going_away_mid_second_lets_no_burst_through(redis_url: str) -> None:
    """What Redis granted counts locally too: when Redis fails right after 25 sends, the
    process does not start from empty windows and send another 30 in the same second."""

    class Failing(aioredis.Redis):
        broken = False

        async def eval(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            if Failing.broken:
                raise aioredis.ConnectionError("Redis went away")
            return await super().eval(*args, **kwargs)  # type: ignore[arg-type]

    async def main() -> None:
        client = Failing.from_url(redis_url)
        flood = RedisFlood(client, f"fl{uuid.uuid4().hex[:6]}:tg:{{f1}}:", LIMITS, Metrics())
        granted: list[float] = []
        for chat in range(1, 26):
            await flood.take_final(chat)
            granted.append(time.monotonic())
        Failing.broken = True
        for chat in range(26, 60):
            await flood.take_final(chat)
            granted.append(time.monotonic())
        assert _max_in_window(granted, 1.0) <= 30
        await client.aclose()

    asyncio.run(main())
