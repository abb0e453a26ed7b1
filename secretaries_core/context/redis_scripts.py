"""The Lua scripts of the Redis context store, loaded once per server (EVALSHA after).

Each touches only keys of one cluster slot, except `purge`, which derives keys from index
members and so runs on a single server only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Pushes the messages of one turn, trims to the cap, refreshes the list's TTL, then touches
# each index in KEYS[4..]: ZADD with the activity score and make its TTL at least the
# context's (an index must outlive every context it lists). PTTL < 0 means "no TTL yet", so
# a new index always gets one. KEYS[1] is the list, KEYS[2] and KEYS[3] the fences of its
# user and of the context (fences.py); ARGV: guard, cap, ttl_ms, score, count of payloads,
# the payloads, since (ms; '' for no fence check), then the index members.
# A fence newer than `since` refuses the write: returns -1 (the turn began before its user
# was erased or its context cleared). A non-empty guard (the turn's id as it appears in
# its JSON) makes the push happen once: a turn already among the newest messages is not
# pushed again, so a write retried after a lost reply cannot double it.
# Returns 0 when the guard found the turn, else the list's new length. That last LLEN is
# a read, and it matters: a write drops the key from the writer's client tracking, the
# read puts it back, so the lane (redis_lane) keeps hearing of other writers' changes.
_PUSH_AND_TOUCH = """
local guard, n = ARGV[1], tonumber(ARGV[5])
local since = ARGV[6 + n]
if since ~= '' then
  for i = 2, 3 do
    local fenced = redis.call('GET', KEYS[i])
    if fenced and tonumber(fenced) >= tonumber(since) then return -1 end
  end
end
if guard ~= '' then
  for _, item in ipairs(redis.call('LRANGE', KEYS[1], -64, -1)) do
    if string.find(item, guard, 1, true) then return 0 end
  end
end
for i = 1, n do redis.call('RPUSH', KEYS[1], ARGV[5 + i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local ttl = tonumber(ARGV[3])
for i = 4, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[4], ARGV[3 + n + i])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return redis.call('LLEN', KEYS[1])
"""
# Records fences (KEYS) at the server's time, for ARGV[1] ms; returns that time (ms).
_FENCE = """
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
for i = 1, #KEYS do redis.call('SET', KEYS[i], now, 'PX', ARGV[1]) end
return now
"""
# The index half of the above, for indexes in another cluster slot than the list.
# KEYS: indexes; ARGV: ttl_ms, score, members...
_TOUCH = """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[2 + i])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"""
# Deletes contexts unless written after the cutoff. KEYS come in pairs (list, user index),
# ARGV is the cutoff then one secretary id per pair. For each pair the reply holds how
# many of (list, user-index entry) it removed (0 when both had already expired), or the
# fresh last-activity score, as a string, when the context was kept. On a cluster it is
# called once per pair (both keys share the user's slot); on one server once per batch.
_DELETE_IF_IDLE = """
local cutoff = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  local sid = ARGV[1 + (i + 1) / 2]
  local score = redis.call('ZSCORE', KEYS[i + 1], sid)
  if score and tonumber(score) > cutoff then
    out[#out + 1] = score
  else
    out[#out + 1] = redis.call('UNLINK', KEYS[i]) + redis.call('ZREM', KEYS[i + 1], sid)
  end
end
return out
"""
# One whole purge batch server-side, for a single server only (it derives keys from the
# index members, which a cluster forbids). It is given the key templates — the class's,
# with `%s` for the user and the secretary (`RedisAdmin.lua_templates`) — so the keys are
# defined once, in Python. ARGV = context, user index and secretary index templates, the
# activity key, the source index, cutoff, batch size, and the secretary hex when the
# source is a secretary's index (its members are bare user ids). Returns {examined, deleted}.
_PURGE_BATCH = """
local ctx_t, uidx_t, sidx_t, activity = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local src, cutoff, n, only_sec = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local members = redis.call('ZRANGEBYSCORE', src, '-inf', cutoff, 'LIMIT', 0, n)
local deleted = 0
for _, m in ipairs(members) do
  local user, sec = m, only_sec
  if only_sec == '' then user, sec = string.match(m, '^(%d+):(%x+)$') end
  local uidx = string.format(uidx_t, user)
  local pair, sidx = user .. ':' .. sec, string.format(sidx_t, sec)
  local score = redis.call('ZSCORE', uidx, sec)
  if score and tonumber(score) > cutoff then
    redis.call('ZADD', activity, 'XX', score, pair)
    redis.call('ZADD', sidx, 'XX', score, user)
  else
    redis.call('UNLINK', string.format(ctx_t, user, sec))
    redis.call('ZREM', uidx, sec)
    redis.call('ZREM', activity, pair)
    redis.call('ZREM', sidx, user)
    deleted = deleted + 1
  end
end
return {#members, deleted}
"""
# The newest messages of one context as ONE reply: the stored items (each compact JSON,
# which never holds a raw newline) joined by newlines. Reading a 100-message context as
# 100 bulk strings cost more in the client's reply parser than everything else in the
# read. KEYS[1] the list; ARGV[1] the LRANGE start. An empty list is an empty string.
_READ = """
return table.concat(redis.call('LRANGE', KEYS[1], ARGV[1], -1), '\\n')
"""
# What the lane remembers: a whole context and how long it lives, {PTTL, joined items}
# (PTTL -2: no such list). Reading it also makes client tracking watch the key.
_READ_ALL = """
return {redis.call('PTTL', KEYS[1]), table.concat(redis.call('LRANGE', KEYS[1], 0, -1), '\\n')}
"""
# The lane's read of a context it remembers (redis_lane): 1 when the list still has the
# remembered length (ARGV[1]) and newest item (its SHA-1, ARGV[2]), else what `read_all`
# answers. A write by anyone changes the newest item (every item carries its own time and
# id); a clear or an expiry empties the list. Checked on every read, in the read's one
# round trip: never stale, whatever happens to invalidation messages.
_READ_IF_CHANGED = """
local n = redis.call('LLEN', KEYS[1])
if n > 0 and n == tonumber(ARGV[1]) then
  if redis.sha1hex(redis.call('LINDEX', KEYS[1], -1)) == ARGV[2] then return 1 end
end
return {redis.call('PTTL', KEYS[1]), table.concat(redis.call('LRANGE', KEYS[1], 0, -1), '\\n')}
"""
SCRIPTS = {
    name: (body, hashlib.sha1(body.encode()).hexdigest())
    for name, body in (
        ("push", _PUSH_AND_TOUCH),
        ("fence", _FENCE),
        ("touch", _TOUCH),
        ("delete", _DELETE_IF_IDLE),
        ("purge", _PURGE_BATCH),
        ("read", _READ),
        ("read_all", _READ_ALL),
        ("read_if_changed", _READ_IF_CHANGED),
    )
}


def push_parts(args: Sequence[Any]) -> tuple[int, int, list[str]]:
    """(cap, ttl_ms, payloads) of a `push` call's ARGV, laid out as the script reads it."""
    count = int(args[4])
    return int(args[1]), int(args[2]), [str(body) for body in args[5 : 5 + count]]


# A cutoff above every real timestamp: delete regardless of age.
ANY_AGE = 1e15
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, RedisClusterException)


def lost_scripts(exc: ResponseError) -> bool:
    """True when the server forgot our scripts (restart, SCRIPT FLUSH)."""
    # redis-py maps the NOSCRIPT reply to NoScriptError, whose text no longer says NOSCRIPT.
    return isinstance(exc, NoScriptError) or "NOSCRIPT" in str(exc)
