"""Leases and heartbeats: who owns a partition, and who is alive.

Partition leases: renew one we hold (or take back one that expired untaken), release one.
A worker busy past its heartbeat is slow, not dead: if its lease expired and nobody took
it, renewing takes it back instead of giving the partition up.

Heartbeats: workers and bot senders beat in a sorted set (member → last beat, ms); those
that beat recently are alive, the others' pending entries may be taken over. Beats and the
"recently" are both read on the Redis server's clock (`TIME`, inside the scripts): hosts
whose clocks disagree by more than a lease would otherwise see live workers as dead.
"""

from __future__ import annotations

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


# KEYS: heartbeats. ARGV: member, keep ms. Beat now (server time), drop old beats.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return string.format('%.0f', now)
"""
# KEYS: heartbeats. ARGV: within ms. Members that beat within that (server time).
_ALIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


async def beat(client: Any, key: str, member: str, keep_ms: float) -> float:
    """Record `member`'s heartbeat now; drop beats older than `keep_ms`. Returns now (ms,
    the server's clock)."""
    found = await client.eval(_BEAT, 1, key, member, int(keep_ms))
    return float(found.decode() if isinstance(found, bytes) else found)


async def alive(client: Any, key: str, within_ms: float) -> set[str]:
    """Members whose last heartbeat is within `within_ms` (the server's clock)."""
    members = await client.eval(_ALIVE, 1, key, int(within_ms))
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}
