"""The Redis context store, on a single server or a Redis Cluster (Redis >= 7.0).

Key layout (P is the prefix, `secretaries:` by default; `{u:<user>}` is the cluster hash
tag that keeps one user's keys in one slot):

    P ctx:{u:<user>}:<secretary>   LIST  the messages, JSON, oldest first
    P user:{u:<user>}              ZSET  secretary -> last activity (the user's contexts)
    P sec:{s:<secretary>}          ZSET  user -> last activity (the secretary's contexts)
    P activity                     ZSET  "<user>:<secretary>" -> last activity (all contexts)
    P secretaries                  ZSET  secretary -> last activity (for stats)

Every key carries a TTL: a context's list expires with the context's retention, and each
index expires no earlier than the newest context it lists (`PEXPIRE NX` then `PEXPIRE GT`),
so an abandoned deployment drains itself. Purges are driven by the sorted sets, never by
KEYS or SCAN, so their cost grows with what they delete.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, ParamSpec, TypeVar

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from secretaries_core.context.base import (
    ContextPolicy,
    ContextStats,
    ContextStore,
    ContextSummary,
    Message,
    ProgressCallback,
    turn_id,
)
from secretaries_core.errors import BackendUnavailable
from secretaries_core.loops import PerLoop
from secretaries_core.timeutil import utcnow

P = ParamSpec("P")
R = TypeVar("R")

# Pushes the messages of one turn, trims to the cap, refreshes the list's TTL, then touches
# each index in KEYS[2..]: ZADD with the activity score and make its TTL at least the
# context's (an index must outlive every context it lists). PTTL < 0 means "no TTL yet", so
# a new index always gets one. KEYS[1] is the list; ARGV: guard, cap, ttl_ms, score, count
# of payloads, the payloads, then the index members. A non-empty guard (the turn's id as it
# appears in its JSON) makes the push happen once: a turn already among the newest
# messages is not pushed again, so a write retried after a lost reply cannot double it.
_PUSH_AND_TOUCH = """
local guard, n = ARGV[1], tonumber(ARGV[5])
if guard ~= '' then
  for _, item in ipairs(redis.call('LRANGE', KEYS[1], -64, -1)) do
    if string.find(item, guard, 1, true) then return 0 end
  end
end
for i = 1, n do redis.call('RPUSH', KEYS[1], ARGV[5 + i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local ttl = tonumber(ARGV[3])
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[4], ARGV[4 + n + i])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
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
# index members, which a cluster forbids). It mirrors the key templates of the class:
# ARGV = prefix, source index, cutoff, batch size, and the secretary hex when the source
# is a secretary's index (its members are bare user ids). Returns {examined, deleted}.
_PURGE_BATCH = """
local p, src, cutoff, n, only_sec = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local members = redis.call('ZRANGEBYSCORE', src, '-inf', cutoff, 'LIMIT', 0, n)
local deleted = 0
for _, m in ipairs(members) do
  local user, sec = m, only_sec
  if only_sec == '' then user, sec = string.match(m, '^(%d+):(%x+)$') end
  local uidx = p .. 'user:{u:' .. user .. '}'
  local pair, sidx = user .. ':' .. sec, p .. 'sec:{s:' .. sec .. '}'
  local score = redis.call('ZSCORE', uidx, sec)
  if score and tonumber(score) > cutoff then
    redis.call('ZADD', p .. 'activity', 'XX', score, pair)
    redis.call('ZADD', sidx, 'XX', score, user)
  else
    redis.call('UNLINK', p .. 'ctx:{u:' .. user .. '}:' .. sec)
    redis.call('ZREM', uidx, sec)
    redis.call('ZREM', p .. 'activity', pair)
    redis.call('ZREM', sidx, user)
    deleted = deleted + 1
  end
end
return {#members, deleted}
"""
_SCRIPTS = {
    name: (body, hashlib.sha1(body.encode()).hexdigest())
    for name, body in (
        ("push", _PUSH_AND_TOUCH),
        ("touch", _TOUCH),
        ("delete", _DELETE_IF_IDLE),
        ("purge", _PURGE_BATCH),
    )
}
# A cutoff above every real timestamp: delete regardless of age.
_ANY_AGE = 1e15
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, RedisClusterException)


def _score(at: datetime) -> float:
    return at.timestamp()


def _from_score(score: float) -> datetime:
    return datetime.fromtimestamp(score, UTC)


class RedisContextStore(ContextStore):
    """Contexts in Redis lists with sorted-set indexes; `client` may be a RedisCluster."""

    CONTEXT_KEY = "{prefix}ctx:{{u:{user}}}:{secretary}"
    USER_INDEX_KEY = "{prefix}user:{{u:{user}}}"
    SECRETARY_INDEX_KEY = "{prefix}sec:{{s:{secretary}}}"
    ACTIVITY_KEY = "{prefix}activity"
    SECRETARIES_KEY = "{prefix}secretaries"

    def __init__(
        self,
        client: Redis | RedisCluster,
        policy: ContextPolicy,
        *,
        prefix: str = "secretaries:",
        url: str = "redis",
        clock: Callable[[], datetime] = utcnow,
        owns_client: bool = False,
        async_client: Callable[[], Any] | None = None,
    ) -> None:
        # Typed loosely: redis-py's reply types differ between Redis and RedisCluster.
        self.client: Any = client
        self.policy = policy
        self.prefix = prefix
        self.url = url
        self.clock = clock
        self.cluster = isinstance(client, RedisCluster)
        self._owns_client = owns_client
        self._scripts_loaded = False
        # redis.asyncio clients, one per event loop, when the store knows how to make them;
        # without a factory the async methods hop to threads like any blocking backend.
        self._async_clients: PerLoop[Any] | None = (
            PerLoop(async_client) if async_client is not None else None
        )

    # -- keys -----------------------------------------------------------------------------

    def context_key(self, user_id: int, secretary_id: uuid.UUID) -> str:
        """The list holding one context's messages."""
        return self.CONTEXT_KEY.format(prefix=self.prefix, user=user_id, secretary=secretary_id.hex)

    def user_index_key(self, user_id: int) -> str:
        """The sorted set of one user's contexts."""
        return self.USER_INDEX_KEY.format(prefix=self.prefix, user=user_id)

    def secretary_index_key(self, secretary_id: uuid.UUID) -> str:
        """The sorted set of one secretary's contexts."""
        return self.SECRETARY_INDEX_KEY.format(prefix=self.prefix, secretary=secretary_id.hex)

    @property
    def activity_key(self) -> str:
        """The sorted set of every context by last activity."""
        return self.ACTIVITY_KEY.format(prefix=self.prefix)

    @property
    def secretaries_key(self) -> str:
        """The sorted set of secretaries that have contexts."""
        return self.SECRETARIES_KEY.format(prefix=self.prefix)

    # -- plumbing -------------------------------------------------------------------------

    def _unavailable(self, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(f"cannot reach the context store {self.url}: {exc}")

    def _load_scripts(self) -> None:
        # SCRIPT LOAD reaches every primary of a cluster; EVALSHA then sends only the hash.
        for body, _sha in _SCRIPTS.values():
            self.client.script_load(body)
        self._scripts_loaded = True

    @staticmethod
    def _call(pipe: Any, script: str, keys: list[str], args: list[Any]) -> None:
        # execute_command: a ClusterPipeline has no evalsha() but routes EVALSHA by its keys.
        pipe.execute_command("EVALSHA", _SCRIPTS[script][1], len(keys), *keys, *args)

    def _run(self, build: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """Queue commands with `build`, execute them in one pipeline, map failures.

        A server that lost its scripts (restart, SCRIPT FLUSH) gets them again once.
        """
        for attempt in (1, 2):
            try:
                if not self._scripts_loaded:
                    self._load_scripts()
                pipe = self.client.pipeline(transaction=transaction and not self.cluster)
                build(pipe)
                return list(pipe.execute())
            except ResponseError as exc:
                if not _lost_scripts(exc) or attempt == 2:
                    raise
                self._scripts_loaded = False
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")

    async def _arun(self, build: Callable[[Any], None]) -> list[Any]:
        """`_run` on this loop's redis.asyncio client (same pipeline, same script reload)."""
        assert self._async_clients is not None
        client = self._async_clients.get()
        for attempt in (1, 2):
            try:
                if not self._scripts_loaded:
                    for body, _sha in _SCRIPTS.values():
                        await client.script_load(body)
                    self._scripts_loaded = True
                pipe = client.pipeline(transaction=False)
                build(pipe)
                return list(await pipe.execute())
            except ResponseError as exc:
                if not _lost_scripts(exc) or attempt == 2:
                    raise
                self._scripts_loaded = False
            except _UNAVAILABLE as exc:
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _queue_push(
        self,
        pipe: Any,
        user_id: int,
        secretary_id: uuid.UUID,
        messages: list[Message],
        rules: ContextPolicy,
    ) -> None:
        """Queue one script call that pushes `messages` (one context's) and touches indexes."""
        now = repr(_score(self.clock()))
        ttl_ms = int(rules.ttl.total_seconds() * 1000)
        bodies = [_encode(message) for message in messages]
        indexes = [
            (self.user_index_key(user_id), secretary_id.hex),
            (self.secretary_index_key(secretary_id), str(user_id)),
            (self.activity_key, f"{user_id}:{secretary_id.hex}"),
            (self.secretaries_key, secretary_id.hex),
        ]
        # One script call on a single server; on a cluster the user's own slot (list and
        # user index) in one call, and each global index in its own.
        local = indexes[:1] if self.cluster else indexes
        self._call(
            pipe,
            "push",
            [self.context_key(user_id, secretary_id), *(k for k, _ in local)],
            [
                _guard(messages),
                rules.max_messages,
                ttl_ms,
                now,
                len(bodies),
                *bodies,
                *(m for _, m in local),
            ],
        )
        if self.cluster:
            for key, member in indexes[1:]:
                self._call(pipe, "touch", [key], [ttl_ms, now, member])

    # -- writes ---------------------------------------------------------------------------

    def append(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        message: Message,
        *,
        policy: ContextPolicy | None = None,
    ) -> None:
        """One round trip: push, trim to the cap, refresh the TTL and the four indexes."""
        rules = policy or self.policy
        self._run(lambda pipe: self._queue_push(pipe, user_id, secretary_id, [message], rules))

    def append_many(
        self,
        items: Iterable[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
        chunk: int = 1000,
    ) -> int:
        """Append many messages, `chunk` appends per round trip."""
        rules = policy or self.policy
        pending: list[tuple[int, uuid.UUID, Message]] = []
        count = 0

        def flush(pipe: Any) -> None:
            for (user_id, secretary_id), messages in _by_context(pending):
                self._queue_push(pipe, user_id, secretary_id, messages, rules)

        for item in items:
            pending.append(item)
            if len(pending) == chunk:
                self._run(flush)
                count += len(pending)
                pending.clear()
        if pending:
            self._run(flush)
            count += len(pending)
        return count

    def clear(self, user_id: int, secretary_id: uuid.UUID) -> bool:
        """Delete one context and its index entries."""
        return self._delete_pairs([(user_id, secretary_id)], _ANY_AGE, from_index=False) > 0

    # -- reads ----------------------------------------------------------------------------

    def read(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """One LRANGE."""
        start = -limit if limit is not None else 0
        try:
            raw = self.client.lrange(self.context_key(user_id, secretary_id), start, -1)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        return _decode(raw)

    async def aread(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """One LRANGE on this loop's async client."""
        if self._async_clients is None:
            return await super().aread(user_id, secretary_id, limit)
        start = -limit if limit is not None else 0
        try:
            client = self._async_clients.get()
            raw = await client.lrange(self.context_key(user_id, secretary_id), start, -1)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        return _decode(raw)

    async def aappend_many(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
    ) -> int:
        """All of `items` in one pipelined round trip on this loop's async client."""
        if self._async_clients is None:
            return await super().aappend_many(items, policy=policy)
        rules = policy or self.policy

        def queue(pipe: Any) -> None:
            for (user_id, secretary_id), messages in _by_context(items):
                self._queue_push(pipe, user_id, secretary_id, messages, rules)

        await self._arun(queue)
        return len(items)

    def _lengths(self, pairs: list[tuple[int, uuid.UUID]]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for user_id, secretary_id in pairs:
            pipe.llen(self.context_key(user_id, secretary_id))
        return [int(n) for n in pipe.execute()] if pairs else []

    def _zrange_batches(self, key: str, batch: int) -> Iterator[list[tuple[bytes, float]]]:
        start = 0
        while True:
            rows = self.client.zrevrange(key, start, start + batch - 1, withscores=True)
            if not rows:
                return
            yield rows
            start += batch

    def iter_contexts(
        self, *, user_id: int | None = None, secretary_id: uuid.UUID | None = None
    ) -> Iterator[ContextSummary]:
        """Live contexts, most recently active first; index entries of expired keys skipped."""
        if user_id is not None:
            key = self.user_index_key(user_id)

            def to_pair(member: bytes) -> tuple[int, uuid.UUID]:
                return user_id, uuid.UUID(member.decode())
        elif secretary_id is not None:
            key = self.secretary_index_key(secretary_id)

            def to_pair(member: bytes) -> tuple[int, uuid.UUID]:
                return int(member), secretary_id
        else:
            key = self.activity_key

            def to_pair(member: bytes) -> tuple[int, uuid.UUID]:
                uid, sid = member.decode().split(":")
                return int(uid), uuid.UUID(sid)

        try:
            for rows in self._zrange_batches(key, 1000):
                scored = [(to_pair(member), score) for member, score in rows]
                if secretary_id is not None:
                    scored = [item for item in scored if item[0][1] == secretary_id]
                pairs = [pair for pair, _ in scored]
                for ((uid, sid), score), length in zip(scored, self._lengths(pairs), strict=True):
                    if length:
                        yield ContextSummary(uid, sid, length, _from_score(score))
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def stats(self) -> ContextStats:
        """Walks the secretaries' indexes with pipelined LLENs (admin use, O(contexts))."""
        per: dict[uuid.UUID, tuple[int, int]] = {}
        try:
            secretaries = self.client.zrange(self.secretaries_key, 0, -1)
            for member in secretaries:
                sid = uuid.UUID(member.decode())
                contexts = messages = 0
                for summary in self.iter_contexts(secretary_id=sid):
                    contexts += 1
                    messages += summary.messages
                if contexts:
                    per[sid] = (contexts, messages)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        return ContextStats(
            contexts=sum(c for c, _ in per.values()),
            messages=sum(m for _, m in per.values()),
            by_secretary=per,
        )

    # -- purge ----------------------------------------------------------------------------

    def _delete_pairs(
        self, pairs: list[tuple[int, uuid.UUID]], cutoff: float, *, from_index: bool = True
    ) -> int:
        """Delete contexts idle since `cutoff` and their index entries; repair stale scores.

        Pairs read from an index count as purged even when their list had already expired
        (the purge removed their index entries); pairs given directly count only if found.
        """
        if not pairs:
            return 0
        groups = [[pair] for pair in pairs] if self.cluster else [pairs]

        def queue_deletes(pipe: Any) -> None:
            for group in groups:
                keys: list[str] = []
                for user_id, secretary_id in group:
                    keys += [self.context_key(user_id, secretary_id), self.user_index_key(user_id)]
                self._call(pipe, "delete", keys, [repr(cutoff), *(s.hex for _, s in group)])

        outcomes = [outcome for reply in self._run(queue_deletes) for outcome in reply]
        gone: dict[str, list[str]] = defaultdict(list)
        fresh: dict[str, dict[str, float]] = defaultdict(dict)
        deleted = 0
        for (user_id, secretary_id), outcome in zip(pairs, outcomes, strict=True):
            member = f"{user_id}:{secretary_id.hex}"
            sec_key = self.secretary_index_key(secretary_id)
            if isinstance(outcome, int):
                deleted += 1 if (from_index or outcome) else 0
                gone[self.activity_key].append(member)
                gone[sec_key].append(str(user_id))
            else:
                # Written after the cutoff: make the global indexes agree with the user's.
                fresh[self.activity_key][member] = float(outcome)
                fresh[sec_key][str(user_id)] = float(outcome)
        # One ZREM / ZADD per index key for the whole batch, not one per context.
        pipe = self.client.pipeline(transaction=False)
        for key, members in gone.items():
            pipe.zrem(key, *members)
        for key, scores in fresh.items():
            pipe.zadd(key, scores, xx=True)
        try:
            pipe.execute()
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        return deleted

    def purge(
        self,
        *,
        older_than: timedelta | None = None,
        user_id: int | None = None,
        secretary_id: uuid.UUID | None = None,
        dry_run: bool = False,
        batch_size: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Index-driven purge in batches: ZRANGEBYSCORE, one pipelined delete per batch."""
        if older_than is None and user_id is None and secretary_id is None:
            older_than = self.policy.ttl
        cutoff = _score(self.clock() - older_than) if older_than is not None else _ANY_AGE
        try:
            if user_id is not None:
                members = self.client.zrangebyscore(self.user_index_key(user_id), "-inf", cutoff)
                pairs = [(user_id, uuid.UUID(m.decode())) for m in members]
                if secretary_id is not None:
                    pairs = [p for p in pairs if p[1] == secretary_id]
                if dry_run:
                    return len(pairs)
                return self._delete_pairs(pairs, cutoff)
            if secretary_id is not None:
                key = self.secretary_index_key(secretary_id)

                def parse(member: bytes) -> tuple[int, uuid.UUID]:
                    return int(member), secretary_id
            else:
                key = self.activity_key

                def parse(member: bytes) -> tuple[int, uuid.UUID]:
                    uid, sid = member.decode().split(":")
                    return int(uid), uuid.UUID(sid)

            total = int(self.client.zcount(key, "-inf", cutoff))
            if dry_run or total == 0:
                return total
            done = 0
            if progress:
                progress(0, total)
            if not self.cluster:
                return self._purge_on_server(key, cutoff, batch_size, secretary_id, total, progress)
            while True:
                members = self.client.zrangebyscore(key, "-inf", cutoff, start=0, num=batch_size)
                if not members:
                    return done
                done += self._delete_pairs([parse(m) for m in members], cutoff)
                if progress:
                    progress(done, max(total, done))
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _purge_on_server(
        self,
        key: str,
        cutoff: float,
        batch_size: int,
        secretary_id: uuid.UUID | None,
        total: int,
        progress: ProgressCallback | None,
    ) -> int:
        """Single server: each batch is one script call that reads, checks and deletes."""
        done = 0
        only = secretary_id.hex if secretary_id is not None else ""
        while True:
            reply = self._run(
                lambda pipe: self._call(
                    pipe, "purge", [], [self.prefix, key, repr(cutoff), batch_size, only]
                )
            )
            examined, deleted = reply[0]
            if not examined:
                return done
            done += int(deleted)
            if progress:
                progress(done, max(total, done))

    async def aclose(self) -> None:
        """Close the running loop's async client."""
        if self._async_clients is not None:
            await self._async_clients.aclose_current(_aclose_client)

    def close(self) -> None:
        """Close the clients if this store created them."""
        super().close()
        if self._async_clients is not None:
            self._async_clients.close_all(_aclose_client)
        if self._owns_client:
            self.client.close()


async def _aclose_client(client: Any) -> None:
    await client.aclose()


def _lost_scripts(exc: ResponseError) -> bool:
    # redis-py maps the NOSCRIPT reply to NoScriptError, whose text no longer says NOSCRIPT.
    return isinstance(exc, NoScriptError) or "NOSCRIPT" in str(exc)


def _encode(message: Message) -> str:
    payload: dict[str, Any] = {"r": message.role, "c": message.content, "t": _score(message.at)}
    if message.metadata:
        payload["m"] = dict(message.metadata)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _guard(messages: list[Message]) -> str:
    """The turn id of `messages` exactly as it appears in their JSON ('' when none)."""
    turn = turn_id(messages)
    if turn is None:
        return ""
    return json.dumps(dict([turn]), separators=(",", ":"), ensure_ascii=False)[1:-1]


def _by_context(
    items: Iterable[tuple[int, uuid.UUID, Message]],
) -> Iterator[tuple[tuple[int, uuid.UUID], list[Message]]]:
    """Consecutive messages of one context together (a turn is pushed by one call)."""
    for pair, group in groupby(items, key=lambda item: (item[0], item[1])):
        yield pair, [message for _u, _s, message in group]


def _decode(raw: list[bytes]) -> list[Message]:
    messages = []
    for item in raw:
        data = json.loads(item)
        messages.append(Message(data["r"], data["c"], _from_score(data["t"]), data.get("m")))
    return messages
