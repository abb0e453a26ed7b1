"""The Redis store's lane: contexts read from memory only while Redis says nothing changed.

Every read here is compared with what Redis itself holds (a read over the store's pool,
which never remembers), and the lane's hit counter shows memory was actually used.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from secretaries_core.context import ContextPolicy, Message, open_context_store
from secretaries_core.context.redis_lane import RedisLane, forget_everywhere
from secretaries_core.context.redis_store import RedisContextStore
from secretaries_core.context.resp3 import Push, encode, parse
from secretaries_core.errors import BackendUnavailable
from tests.servers import redis_server, restartable_redis

SEC = uuid.UUID(int=7)
POLICY = ContextPolicy(timedelta(hours=1), 6)
HOSTILE = 'line\nbreak \r\n "quoted" \\ back \x00 nul 🦊 {"r":"system"} \u2028'


def _store(url: str, prefix: str, policy: ContextPolicy = POLICY) -> RedisContextStore:
    store = open_context_store(url, policy=policy, prefix=prefix)
    assert isinstance(store, RedisContextStore)
    return store


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    name = f"lane{uuid.uuid4().hex[:6]}:"
    yield name
    raw = Redis.from_url(redis_url)
    for key in raw.scan_iter(f"{name}*"):
        raw.delete(key)
    raw.close()


def _turn(i: int, user: int = 1) -> list[tuple[int, uuid.UUID, Message]]:
    at = datetime.now(UTC)
    return [
        (user, SEC, Message("user", f"{HOSTILE} {i}", at, {"update_id": 1000 + i})),
        (user, SEC, Message("assistant", f"answer {i}", at, {"tokens": i})),
    ]


def _lane(store: RedisContextStore) -> RedisLane:
    lane = store.lanes.current()
    assert lane is not None
    return lane


def test_own_turns_are_remembered_and_match_redis(redis_url: str, prefix: str) -> None:
    store = _store(redis_url, prefix)

    async def scenario() -> int:
        for i in range(30):
            await store.aappend_many(_turn(i))
            for limit in (None, 1, 4, 0):
                assert await store.aread(1, SEC, limit) == store.read(1, SEC, limit)
        # A turn delivered twice (the guard finds it) changes nothing, in memory either.
        await store.aappend_many(_turn(29))
        assert await store.aread(1, SEC) == store.read(1, SEC)
        assert len(store.read(1, SEC)) == POLICY.max_messages
        hits = _lane(store).hits
        await store.aclose()
        return hits

    hits = asyncio.run(scenario())
    assert hits >= 100  # 121 reads, one from Redis: the rest from memory
    store.close()


def test_a_write_made_anywhere_in_the_process_is_seen_at_once(redis_url: str, prefix: str) -> None:
    a, b = _store(redis_url, prefix), _store(redis_url, prefix)

    async def scenario() -> None:
        await a.aappend_many(_turn(1))
        assert len(await a.aread(1, SEC)) == 2
        await b.aappend_many(_turn(2))  # another store's lane
        assert [m.content for m in await a.aread(1, SEC)][-1] == "answer 2"
        b.append(1, SEC, Message("user", "sync", datetime.now(UTC)))  # another store's pool
        assert (await a.aread(1, SEC))[-1].content == "sync"
        assert b.clear(1, SEC)
        assert await a.aread(1, SEC) == []
        await a.aappend_many(_turn(3))
        assert len(await a.aread(1, SEC)) == 2
        assert b.purge(user_id=1) == 1
        assert await a.aread(1, SEC) == []
        await a.aappend_many(_turn(4))
        await a.aread(1, SEC)
        assert b.purge(older_than=timedelta(seconds=-5)) == 1  # everything, on the server
        assert await a.aread(1, SEC) == []
        await a.aclose()
        await b.aclose()

    asyncio.run(scenario())
    a.close()
    b.close()


def test_a_foreign_writer_is_seen_once_redis_answered_after_it(redis_url: str, prefix: str) -> None:
    """Writers outside the process (a second bot, redis-cli) reach the lane through Redis'
    notice: any read that starts after Redis answered a later command sees the change."""
    store = _store(redis_url, prefix)
    raw = Redis.from_url(redis_url)
    key = store.context_key(1, SEC)
    other = (
        "import sys, uuid; from datetime import UTC, datetime, timedelta;"
        "from secretaries_core.context import ContextPolicy, Message, open_context_store;"
        "s = open_context_store(sys.argv[1], policy=ContextPolicy(timedelta(hours=1), 6),"
        " prefix=sys.argv[2]);"
        "s.append(1, uuid.UUID(int=7), Message('user', 'from elsewhere', datetime.now(UTC)))"
    )

    async def scenario() -> None:
        await store.aappend_many(_turn(1))
        await store.aread(1, SEC)
        subprocess.run([sys.executable, "-c", other, redis_url, prefix], check=True)
        raw.ping()
        assert (await store.aread(1, SEC))[-1].content == "from elsewhere"
        raw.rpush(key, b"not a stored message")  # damaged: left out, not fatal
        raw.ping()
        assert (await store.aread(1, SEC))[-1].content == "from elsewhere"
        raw.lset(key, 0, raw.lindex(key, 1) or b"")
        raw.ping()
        assert await store.aread(1, SEC) == store.read(1, SEC)
        raw.flushdb()
        assert await store.aread(1, SEC) == []
        await store.aclose()

    asyncio.run(scenario())
    raw.close()
    store.close()


def test_a_remembered_context_still_expires() -> None:
    # No active expiry: only a read that reaches Redis finds the list gone, so memory has
    # to know the TTL itself.
    with redis_server("--enable-debug-command", "yes") as (port, _root):
        url = f"redis://127.0.0.1:{port}/0"
        raw = Redis.from_url(url)
        raw.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        store = _store(url, "x:", ContextPolicy(timedelta(seconds=1), 6))

        async def scenario() -> None:
            await store.aappend_many(_turn(1))
            assert len(await store.aread(1, SEC)) == 2
            assert len(await store.aread(1, SEC)) == 2
            await asyncio.sleep(1.1)
            assert await store.aread(1, SEC) == []
            await store.aclose()

        asyncio.run(scenario())
        store.close()
        raw.close()


def test_interleaved_writers_never_leave_a_stale_read(redis_url: str, prefix: str) -> None:
    """Two stores and a raw client, at random: each lane read equals Redis' own."""
    a, b = _store(redis_url, prefix), _store(redis_url, prefix)
    raw = Redis.from_url(redis_url)
    rng = random.Random(18)

    async def scenario() -> int:
        for step in range(400):
            store = rng.choice((a, b))
            user = rng.randint(1, 3)
            op = rng.random()
            if op < 0.45:
                await store.aappend_many(_turn(step, user))
            elif op < 0.55:
                store.append(user, SEC, Message("user", f"sync {step}", datetime.now(UTC)))
            elif op < 0.6:
                store.clear(user, SEC)
            elif op < 0.63:
                store.purge(user_id=user)
            elif op < 0.66:
                raw.delete(store.context_key(user, SEC))
                raw.ping()
            else:
                limit = rng.choice((None, 1, 3, 6))
                assert await store.aread(user, SEC, limit) == store.read(user, SEC, limit), step
        hits = _lane(a).hits + _lane(b).hits
        await a.aclose()
        await b.aclose()
        return hits

    hits = asyncio.run(scenario())
    assert hits > 20
    raw.close()
    a.close()
    b.close()


def test_restart_with_no_call_in_between_forgets_what_redis_lost() -> None:
    with restartable_redis(aof=False) as server:
        store = _store(server.url, "r:")

        async def scenario() -> None:
            await store.aappend_many(_turn(1))
            assert len(await store.aread(1, SEC)) == 2
            server.restart()  # blocks the loop: the lane's socket is dead when it resumes
            assert await store.aread(1, SEC) == []  # Redis lost it; memory must not answer
            await store.aappend_many(_turn(2))
            assert [m.content for m in await store.aread(1, SEC)] == [f"{HOSTILE} 2", "answer 2"]
            server.stop()
            with pytest.raises(BackendUnavailable):
                await store.aread(1, SEC)  # never an answer from memory while Redis is down
            with pytest.raises(BackendUnavailable):
                await store.aappend_many(_turn(3))
            server.start()
            await store.aappend_many(_turn(3))
            assert await store.aread(1, SEC) == store.read(1, SEC)
            await store.aclose()

        asyncio.run(scenario())
        store.close()


def test_a_restart_under_load_loses_and_doubles_no_turn() -> None:
    with restartable_redis(aof=True) as server:
        store = _store(server.url, "l:", ContextPolicy(timedelta(hours=1), 1000))

        async def user(n: int) -> None:
            for i in range(40):
                await store.aread(n, SEC)
                await store.aappend_many(_turn(i, n))
                await asyncio.sleep(0.005)

        async def scenario() -> None:
            users = [asyncio.create_task(user(n)) for n in range(1, 21)]
            await asyncio.sleep(0.15)
            await asyncio.to_thread(server.restart, 0.3)
            await asyncio.gather(*users)
            for n in range(1, 21):
                got = await store.aread(n, SEC)
                assert got == store.read(n, SEC)
                ids = [m.metadata["update_id"] for m in got if m.role == "user" and m.metadata]
                assert ids == [1000 + i for i in range(40)], n
            await store.aclose()

        asyncio.run(scenario())
        store.close()


def test_a_server_without_client_tracking_keeps_the_pool(redis_url: str) -> None:
    with redis_server("--rename-command", "CLIENT", '""') as (port, _root):
        store = _store(f"redis://127.0.0.1:{port}/0", "old:")

        async def scenario() -> None:
            await store.aappend_many(_turn(1))
            assert len(await store.aread(1, SEC)) == 2
            assert not store.lanes.on  # refused once: the pool from then on
            await store.aappend_many(_turn(2))
            assert await store.aread(1, SEC) == store.read(1, SEC)
            await store.aclose()

        asyncio.run(scenario())
        store.close()


Answer = Callable[[str, list[str]], Awaitable[bytes | None]]


@asynccontextmanager
async def _fake_redis(answer: Answer) -> AsyncIterator[str]:
    """A TCP server speaking just enough RESP: `answer(command, names so far)` gives the
    bytes to send back (None: say nothing). Yields its redis:// URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[str] = []
        buf = b""
        while data := await reader.read(65536):
            buf += data
            while True:
                try:
                    command, used = parse(buf, 0)
                except Exception:
                    break
                buf = buf[used:]
                seen.append(command[0].decode())
                reply = await answer(seen[-1], seen)
                if reply is not None:
                    writer.write(reply)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        server.close()
        await server.wait_closed()


def _fake_lane(url: str, *, timeout_s: float = 1.0, retries: int = 3) -> RedisLane:
    return RedisLane(url, connect_timeout_s=1, timeout_s=timeout_s, retries=retries)


_ITEM = b'{"r":"user","c":"hello","t":1.5}'
READ_REPLY = b"*2\r\n:60000\r\n$%d\r\n%s\r\n" % (len(_ITEM), _ITEM)


def test_a_silent_server_times_the_lane_out() -> None:
    """A server that answers the handshake, then nothing: commands fail, none hangs."""

    async def answer(name: str, seen: list[str]) -> bytes | None:
        return {"HELLO": b"%0\r\n", "CLIENT": b"+OK\r\n"}.get(name)

    async def scenario() -> float:
        async with _fake_redis(answer) as url:
            lane = _fake_lane(url, timeout_s=0.3, retries=1)
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await lane.read("k", None)
            took = time.monotonic() - started
            await lane.aclose()
            return took

    assert asyncio.run(scenario()) < 2.0


def test_a_server_still_loading_is_waited_for_not_given_up() -> None:
    """Right after a restart Redis answers LOADING, to the handshake or to a command; the
    lane retries (it must neither decide the server has no client tracking and fall back
    to the pool for good, nor fail the message as an unexpected error)."""
    names: list[str] = []

    async def answer(name: str, seen: list[str]) -> bytes | None:
        names.append(name)
        if name in ("HELLO", "EVALSHA") and names.count(name) == 1:
            return b"-LOADING Redis is loading the dataset in memory\r\n"
        return {"HELLO": b"%1\r\n$5\r\nproto\r\n:3\r\n", "EVALSHA": READ_REPLY}.get(
            name, b"+OK\r\n"
        )

    async def scenario() -> None:
        async with _fake_redis(answer) as url:
            lane = _fake_lane(url)
            assert [m.content for m in await lane.read("k", None)] == ["hello"]
            await lane.aclose()

    asyncio.run(scenario())
    assert names == ["HELLO", "CLIENT", "HELLO", "CLIENT", "EVALSHA", "EVALSHA"]


def test_a_read_in_flight_across_a_write_is_used_but_not_kept() -> None:
    """A write on another thread makes lanes forget while a read is on its way: that read's
    reply may be from before the write, so it must not be remembered (Redis' own notice
    could come a moment later than the reply)."""
    release = asyncio.Event

    async def scenario(forget_between: bool) -> bool:
        asked, go = release(), release()

        async def answer(name: str, seen: list[str]) -> bytes | None:
            if name == "EVALSHA":
                asked.set()
                await go.wait()
                return READ_REPLY
            return {"HELLO": b"%0\r\n"}.get(name, b"+OK\r\n")

        async with _fake_redis(answer) as url:
            lane = _fake_lane(url)
            reading = asyncio.create_task(lane.read("k", None))
            await asyncio.wait_for(asked.wait(), 5)
            if forget_between:
                await asyncio.to_thread(forget_everywhere, url, ["other"])
            go.set()
            assert [m.content for m in await reading] == ["hello"]
            kept = "k" in lane._memory
            await lane.aclose()
            return kept

    assert asyncio.run(scenario(False))
    assert not asyncio.run(scenario(True))


def test_resp3_parses_any_split_of_a_stream() -> None:
    stream = (
        b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n#t\r\n"
        b">2\r\n$10\r\ninvalidate\r\n*2\r\n$3\r\nk:1\r\n$3\r\nk:2\r\n"
        b"*2\r\n:-2\r\n$11\r\nline\nbreak!\r\n_\r\n,1.5\r\n-ERR boom\r\n"
        b"|1\r\n+ttl\r\n:3\r\n+after attr\r\n>2\r\n$10\r\ninvalidate\r\n_\r\n"
    )
    whole = []
    pos = 0
    while pos < len(stream):
        value, pos = parse(stream, pos)
        whole.append(value)
    assert whole[0] == {b"server": b"redis", b"proto": 3} and whole[1] is True
    assert isinstance(whole[2], Push) and whole[2] == [b"invalidate", [b"k:1", b"k:2"]]
    assert whole[3] == [-2, b"line\nbreak!"] and whole[4] is None and whole[5] == 1.5
    assert whole[6].text == "ERR boom" and whole[7] == b"after attr"
    assert whole[8] == [b"invalidate", None]

    def plain(values: list[object]) -> list[object]:
        return [("error", v.text) if hasattr(v, "text") else v for v in values]

    for cut in range(1, len(stream)):
        got, pos, buf = [], 0, stream[:cut]
        for more in (b"", stream[cut:]):
            buf += more
            while pos < len(buf):
                try:
                    value, pos = parse(buf, pos)
                except Exception as exc:
                    assert type(exc).__name__ == "_Incomplete", cut
                    break
                got.append(value)
        assert plain(got) == plain(whole), cut
    wire = b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n2.5\r\n"
    assert encode(["SET", b"k", 1, 2.5]) == wire


def test_remembering_can_be_turned_off(redis_url: str, prefix: str, tmp_path: object) -> None:
    from secretaries_core.config import Settings
    from secretaries_core.errors import InvalidInput

    env = {"SECRETARIES_HOME": str(tmp_path)}
    assert Settings.load(env=env).redis_remember_contexts
    off = Settings.load(env={**env, "SECRETARIES_REDIS_REMEMBER_CONTEXTS": "Off"})
    assert not off.redis_remember_contexts
    with pytest.raises(InvalidInput, match="SECRETARIES_REDIS_REMEMBER_CONTEXTS"):
        Settings.load(env={**env, "SECRETARIES_REDIS_REMEMBER_CONTEXTS": "sometimes"})
    store = open_context_store(
        redis_url, policy=POLICY, prefix=prefix, remember=off.redis_remember_contexts
    )
    assert isinstance(store, RedisContextStore) and not store.lanes.on

    async def scenario() -> None:
        await store.aappend_many(_turn(1))
        assert await store.aread(1, SEC) == store.read(1, SEC)
        await store.aclose()

    asyncio.run(scenario())
    store.close()


def test_password_database_and_unix_socket_reach_the_same_lists(tmp_path: object) -> None:
    """The lane opens what the pool opens: a percent-encoded password, database 3, a unix
    socket with ?db=2 — checked by reading what the pool wrote, and by the lane's hits."""
    from pathlib import Path

    sock = Path(str(tmp_path)) / "r.sock"
    with redis_server(
        "--requirepass", "p@ss:w/rd", "--unixsocket", str(sock), "--unixsocketperm", "700"
    ) as (port, _root):
        for url in (
            f"redis://:p%40ss%3Aw%2Frd@127.0.0.1:{port}/3",
            f"unix://:p%40ss%3Aw%2Frd@{sock}?db=2",
        ):
            store = _store(url, "auth:")
            store.append_many(_turn(1))  # over the pool

            async def scenario(store: RedisContextStore = store) -> int:
                for i in range(2, 6):
                    assert await store.aread(1, SEC) == store.read(1, SEC)
                    await store.aappend_many(_turn(i))
                assert await store.aread(1, SEC) == store.read(1, SEC)
                hits = _lane(store).hits
                await store.aclose()
                return hits

            assert asyncio.run(scenario()) >= 4, url
            store.close()
        key = store.context_key(1, SEC)
        for db, length in ((0, 0), (2, 6), (3, 6)):  # lane and pool wrote to the named db
            raw = Redis(port=port, password="p@ss:w/rd", db=db)
            assert raw.llen(key) == length, db
            raw.close()


def test_over_tls_too(tmp_path: object) -> None:
    """rediss:// with a private CA (verified, hostname checked): the lane remembers, and a
    write by another client is never answered from memory, though over TLS the lane can
    only see that bytes wait, not read them ahead."""
    from pathlib import Path

    from tests.servers import tls_redis_server

    with tls_redis_server(Path(str(tmp_path))) as (port, url):
        store = _store(url, "tls:")
        raw = Redis(port=port)  # another client, on the plain port

        async def scenario() -> int:
            for i in range(1, 6):
                await store.aappend_many(_turn(i))
                assert await store.aread(1, SEC) == store.read(1, SEC)
            raw.rpush(store.context_key(1, SEC), raw.lindex(store.context_key(1, SEC), 0) or b"")
            raw.ping()
            assert await store.aread(1, SEC) == store.read(1, SEC)
            raw.delete(store.context_key(1, SEC))
            raw.ping()
            assert await store.aread(1, SEC) == []
            hits = _lane(store).hits
            await store.aclose()
            return hits

        assert asyncio.run(scenario()) >= 3
        store.close()
        raw.close()


@asynccontextmanager
async def _slow_proxy(target_port: int, delay_s: float) -> AsyncIterator[int]:
    """A TCP proxy that holds every byte from Redis to the client for `delay_s` (a
    retransmit, a congested link): invalidation notices arrive late, in order."""

    async def pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pump(client_r, server_w, 0.0), pump(server_r, client_w, delay_s))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def test_a_clear_by_another_process_is_never_followed_by_a_stale_read(
    redis_url: str, prefix: str
) -> None:
    """/new in another process, then at once a read through a link that delays Redis'
    bytes (the invalidation notice among them): the read never returns the old context."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    clear = (
        "import sys, uuid; from datetime import timedelta;"
        "from secretaries_core.context import ContextPolicy, open_context_store;"
        "s = open_context_store(sys.argv[1], policy=ContextPolicy(timedelta(hours=1), 6),"
        " prefix=sys.argv[2]);"
        "s.clear(1, uuid.UUID(int=7))"
    )

    async def scenario() -> tuple[int, int]:
        stale = 0
        async with _slow_proxy(port, 0.15) as proxied:
            store = _store(f"redis://127.0.0.1:{proxied}/0", prefix)
            for i in range(6):
                await store.aappend_many(_turn(i))
                assert [m.content for m in await store.aread(1, SEC)][-1] == f"answer {i}"
                await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-c", clear, redis_url, prefix], check=True
                )
                if await store.aread(1, SEC) != []:
                    stale += 1
            await store.aappend_many(_turn(99))
            for _ in range(3):
                assert [m.content for m in await store.aread(1, SEC)][-1] == "answer 99"
            hits = _lane(store).hits
            await store.aclose()
            store.close()
        return stale, hits

    stale, hits = asyncio.run(scenario())
    assert stale == 0
    assert hits > 0  # the reads after own pushes were answered "unchanged" by Redis
