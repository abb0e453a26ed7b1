"""Redis context store vs raw redis-py, measured in the same run on a private redis-server.

- append: `RedisContextStore.append` (one EVALSHA per append) vs raw redis-py sending the
  same commands (RPUSH, LTRIM, PEXPIRE, 4 x ZADD + PEXPIRE) in one MULTI pipeline per append;
- purge: 10% stale among N contexts: this store vs the raw sorted-set strategy
  (ZRANGEBYSCORE + pipelined UNLINK/ZREM) vs SCAN + PTTL + UNLINK over the keyspace.

Run: python -m bench.context_redis [--contexts 1000000] [--appends 20000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from redis import Redis

from bench.common import Row, print_table, timed
from secretaries_core.context import ContextPolicy, Message, RedisContextStore
from tests.servers import redis_server

PREFIX = "bench:"
TTL = timedelta(days=7)
SECRETARIES = [uuid.UUID(int=i + 1) for i in range(10)]

# Builds contexts server-side (a bench fixture, not product code): ARGV = first, last,
# prefix, now, ttl_ms, stale_every, stale_age_s. Context i belongs to user i // 10 and
# secretary i % 10; every stale_every-th context is stale_age_s older.
_SEED = """
local first, last, p = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local every, age = tonumber(ARGV[6]), tonumber(ARGV[7])
for i = first, last do
  local user, sec = math.floor(i / 10), string.format('%032x', i % 10 + 1)
  local score, pttl = now, ttl
  if i % every == 0 then score = now - age; pttl = ttl - age * 1000 end
  local ctx = p .. 'ctx:{u:' .. user .. '}:' .. sec
  redis.call('RPUSH', ctx, '{"r":"user","c":"hello","t":' .. score .. '}')
  redis.call('PEXPIRE', ctx, pttl)
  redis.call('ZADD', p .. 'user:{u:' .. user .. '}', score, sec)
  redis.call('PEXPIRE', p .. 'user:{u:' .. user .. '}', ttl)
  redis.call('ZADD', p .. 'sec:{s:' .. sec .. '}', score, user)
  redis.call('ZADD', p .. 'activity', score, user .. ':' .. sec)
  redis.call('ZADD', p .. 'secretaries', score, sec)
end
for _, k in ipairs({p .. 'activity', p .. 'secretaries'}) do redis.call('PEXPIRE', k, ttl) end
return last - first + 1
"""


@contextmanager
def redis_client() -> Iterator[Redis]:
    """A client on $SECRETARIES_BENCH_REDIS_URL or on a private server."""
    given = os.environ.get("SECRETARIES_BENCH_REDIS_URL")
    if given:
        client = Redis.from_url(given)
        client.flushdb()
        yield client
        client.flushdb()
        return
    with redis_server() as (port, _root):
        yield Redis(port=port)


def seed(client: Redis, contexts: int, stale_every: int = 10, stale_age_s: int = 3 * 86400) -> None:
    """Create `contexts` contexts server-side, every `stale_every`-th one idle for 3 days."""
    client.flushdb()
    now = time.time()
    ttl_ms = int(TTL.total_seconds() * 1000)
    for first in range(0, contexts, 50_000):
        last = min(first + 50_000, contexts) - 1
        client.eval(_SEED, 0, first, last, PREFIX, now, ttl_ms, stale_every, stale_age_s)


def raw_append(
    client: Redis, user: int, sec: uuid.UUID, body: str, now: float, ttl_ms: int
) -> None:
    """The baseline append: the same commands as the store, in one MULTI pipeline."""
    key = f"{PREFIX}ctx:{{u:{user}}}:{sec.hex}"
    pipe = client.pipeline(transaction=True)
    pipe.rpush(key, body)
    pipe.ltrim(key, -100, -1)
    pipe.pexpire(key, ttl_ms)
    for index, member in (
        (f"{PREFIX}user:{{u:{user}}}", sec.hex),
        (f"{PREFIX}sec:{{s:{sec.hex}}}", str(user)),
        (f"{PREFIX}activity", f"{user}:{sec.hex}"),
        (f"{PREFIX}secretaries", sec.hex),
    ):
        pipe.zadd(index, {member: now})
        pipe.pexpire(index, ttl_ms)
    pipe.execute()


def bench_append(client: Redis, store: RedisContextStore, appends: int) -> Row:
    """Appends per second, ours vs raw, as seconds for `appends` appends."""
    client.flushdb()
    at = datetime.now(UTC)
    body = '{"r":"user","c":"hello there","t":1}'
    ttl_ms = int(TTL.total_seconds() * 1000)
    message = Message("user", "hello there", at)

    def ours() -> None:
        for i in range(appends):
            store.append(i % 5000, SECRETARIES[i % 10], message)

    def raw() -> None:
        for i in range(appends):
            raw_append(client, i % 5000, SECRETARIES[i % 10], body, time.time(), ttl_ms)

    store.append(0, SECRETARIES[0], message)  # load the scripts outside the timing
    baseline = timed(raw)
    client.flushdb()
    store.append(0, SECRETARIES[0], message)
    mine = timed(ours)
    return Row(
        f"append x{appends:,} ({appends / mine:,.0f}/s vs {appends / baseline:,.0f}/s)",
        mine,
        baseline,
        "raw redis-py, same cmds, 1 pipeline",
    )


def bench_read(client: Redis, store: RedisContextStore, reads: int) -> Row:
    """`read` (one LRANGE plus JSON decoding) vs a raw LRANGE of the same key."""
    client.flushdb()
    at = datetime.now(UTC)
    sec = SECRETARIES[0]
    store.append_many(
        (u, sec, Message("user", f"message {i}", at)) for u in range(100) for i in range(20)
    )
    keys = [store.context_key(u, sec) for u in range(100)]
    mine = timed(lambda: [store.read(i % 100, sec) for i in range(reads)])
    raw = timed(lambda: [client.lrange(keys[i % 100], 0, -1) for i in range(reads)])
    return Row(
        f"read x{reads:,} (20 messages each)", mine / reads, raw / reads, "raw redis-py LRANGE"
    )


def raw_zset_purge(client: Redis, cutoff: float, batch: int = 1000) -> int:
    """The floor for an index-driven purge: no re-check, no repair, plain pipelines."""
    done = 0
    while members := client.zrangebyscore(f"{PREFIX}activity", "-inf", cutoff, start=0, num=batch):
        pipe = client.pipeline(transaction=False)
        by_sec: dict[str, list[str]] = {}
        for member in members:
            user, sec = member.decode().split(":")
            pipe.unlink(f"{PREFIX}ctx:{{u:{user}}}:{sec}")
            pipe.zrem(f"{PREFIX}user:{{u:{user}}}", sec)
            by_sec.setdefault(sec, []).append(user)
        pipe.zrem(f"{PREFIX}activity", *members)
        for sec, users in by_sec.items():
            pipe.zrem(f"{PREFIX}sec:{{s:{sec}}}", *users)
        pipe.execute()
        done += len(members)
    return done


def scan_unlink_purge(client: Redis, older_than: timedelta, batch: int = 1000) -> int:
    """The naive purge: SCAN every key, PTTL each context, UNLINK the idle ones."""
    limit_ms = (TTL - older_than).total_seconds() * 1000
    done = 0
    keys: list[bytes] = []

    def flush() -> int:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
        idle = [k for k, ttl in zip(keys, pipe.execute(), strict=True) if 0 < ttl < limit_ms]
        if idle:
            client.unlink(*idle)
        keys.clear()
        return len(idle)

    for key in client.scan_iter(match=f"{PREFIX}ctx:*", count=batch):
        keys.append(key)
        if len(keys) == batch:
            done += flush()
    return done + flush()


def bench_purge(client: Redis, store: RedisContextStore, contexts: int) -> list[Row]:
    """Purge the 10% stale contexts three ways, each on a freshly seeded keyspace."""
    older = timedelta(days=1)
    results: dict[str, tuple[float, int]] = {}
    for name, run in (
        ("ours", lambda: store.purge(older_than=older)),
        ("zset", lambda: raw_zset_purge(client, time.time() - older.total_seconds())),
        ("scan", lambda: scan_unlink_purge(client, older)),
    ):
        seed(client, contexts)
        start = time.perf_counter()
        purged = run()
        results[name] = (time.perf_counter() - start, purged)
    stale = contexts // 10
    for name, (_, purged) in results.items():
        assert purged == stale, (name, purged, stale)
    ours = results["ours"][0]
    label = f"purge {stale:,} stale of {contexts:,}"
    return [
        Row(label, ours, results["zset"][0], "raw sorted-set strategy"),
        Row(label, ours, results["scan"][0], "SCAN + PTTL + UNLINK"),
    ]


def run(contexts: int, appends: int) -> list[Row]:
    """Every Redis row of the table."""
    with redis_client() as client:
        policy = ContextPolicy(TTL, 100)
        store = RedisContextStore(client, policy, prefix=PREFIX)
        rows = [bench_append(client, store, appends), bench_read(client, store, appends)]
        rows += bench_purge(client, store, contexts)
        client.flushdb()
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contexts", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=20_000)
    args = parser.parse_args()
    print_table("Redis context store", run(args.contexts, args.appends))


if __name__ == "__main__":
    main()
