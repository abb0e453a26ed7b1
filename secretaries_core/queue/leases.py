"""Partition leases: renew one we hold (or take back one that expired untaken), release one.

A worker busy past its heartbeat is slow, not dead: if its lease expired and nobody took
it, renewing takes it back instead of giving the partition up.
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
