"""Leases and heartbeats: who owns a partition, and who is alive.

Partition leases: renew one we hold (or take back one that expired untaken), release one.
A worker busy past its heartbeat is slow, not dead: if its lease expired and nobody took
it, renewing takes it back instead of giving the partition up.

Heartbeats: workers and bot senders beat in a sorted set (member → last beat, ms); those
that beat recently are alive, the others' pending entries may be taken over.
"""

from __future__ import annotations

import time
from typing import Any

# KEYS: lease. ARGV: owner, ttl ms. Renew a lease we hold, or take it back if it expired
# while nobody else took it (a worker busy past its heartbeat is slow, not dead).
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not owner then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 or 0
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def renew(client: Any, key: str, owner: str, ttl_ms: int) -> bool:
    """Keep the lease `key` for `owner` another `ttl_ms`; False when another worker holds it."""
    return bool(await client.eval(_RENEW, 1, key, owner, ttl_ms))


async def release(client: Any, key: str, owner: str) -> bool:
    """Give the lease back if `owner` still holds it."""
    return bool(await client.eval(_RELEASE, 1, key, owner))


async def beat(client: Any, key: str, member: str, keep_ms: float) -> float:
    """Record `member`'s heartbeat now; drop beats older than `keep_ms`. Returns now (ms)."""
    now_ms = time.time() * 1000
    await client.zadd(key, {member: now_ms})
    await client.zremrangebyscore(key, "-inf", now_ms - keep_ms)
    await client.pexpire(key, int(keep_ms))
    return now_ms


async def alive(client: Any, key: str, within_ms: float) -> set[str]:
    """Members whose last heartbeat is within `within_ms`."""
    since = time.time() * 1000 - within_ms
    members = await client.zrangebyscore(key, since, "+inf")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}
