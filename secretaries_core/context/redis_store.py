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

import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from datetime import datetime
from itertools import groupby
from typing import Any, NamedTuple, ParamSpec, TypeVar, cast

from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from secretaries_core.context.base import ContextPolicy, ContextStore, Message
from secretaries_core.context.fences import FENCE_TTL_S, Fenced, fence_ids, key_slot, slot_tag
from secretaries_core.context.redis_admin import RedisAdmin, score
from secretaries_core.context.redis_clients import (
    COMMAND_RETRIES,
    CONNECT_TIMEOUT_S,
    SOCKET_TIMEOUT_S,
)
from secretaries_core.context.redis_items import decode_joined, encode, guard
from secretaries_core.context.redis_lane import Lanes, LaneUnsupported
from secretaries_core.context.redis_scripts import ANY_AGE, SCRIPTS, UNAVAILABLE, lost_scripts
from secretaries_core.errors import BackendUnavailable
from secretaries_core.plumbing.loops import PerLoop
from secretaries_core.plumbing.memo import each_once
from secretaries_core.plumbing.timeutil import utcnow

log = logging.getLogger(__name__)
PUSH_KEYS_CAP = 16384


class _PushKeys(NamedTuple):
    """What a push of one context names: the script's keys (the list, its fences, the
    indexes it touches itself), those indexes' members, and (on a cluster) the indexes in
    other slots, each touched by a call of its own."""

    keys: list[str]
    members: list[str]
    elsewhere: list[tuple[str, str]]


P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class RedisContextStore(RedisAdmin, ContextStore):
    """Contexts in Redis lists with sorted-set indexes; `client` may be a RedisCluster."""

    CONTEXT_KEY = "{prefix}ctx:{{u:{user}}}:{secretary}"
    USER_INDEX_KEY = "{prefix}user:{{u:{user}}}"
    SECRETARY_INDEX_KEY = "{prefix}sec:{{s:{secretary}}}"
    ACTIVITY_KEY = "{prefix}activity"
    SECRETARIES_KEY = "{prefix}secretaries"
    FENCE_KEY = "{prefix}fence:{{{tag}}}:{digest}"

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
        lane: str | None = None,
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
        # `lane`: the URL of one tracked connection per loop for context reads and turn
        # pushes (redis_lane); a single server only (a cluster spreads contexts over nodes).
        self.lanes = Lanes(
            lane if not self.cluster else None,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            timeout_s=SOCKET_TIMEOUT_S,
            retries=COMMAND_RETRIES,
        )
        # (user, secretary) -> the keys and index members its pushes name: every write of a
        # context names the same seven keys, which formatting and hashing anew cost more
        # than the rest of preparing the write. Emptied when it outgrows PUSH_KEYS_CAP.
        self._push_keys: dict[tuple[int, uuid.UUID], _PushKeys] = {}

    # -- keys -----------------------------------------------------------------------------

    def fence_keys(self, user_id: int, secretary_id: uuid.UUID) -> list[str]:
        """The fences of a context's user and of the context, in the user's cluster slot."""
        tag = slot_tag(key_slot(f"u:{user_id}")) if self.cluster else "fence"
        return [
            self.FENCE_KEY.format(prefix=self.prefix, tag=tag, digest=digest)
            for digest in fence_ids(user_id, secretary_id)
        ]

    def fence(self, user_id: int, secretary_id: uuid.UUID | None = None) -> None:
        """Refuse from now on the writes of turns that began before (see fences.py): of
        every context of the user, or of one context."""
        keys = self.fence_keys(user_id, secretary_id or uuid.UUID(int=0))
        chosen = keys[:1] if secretary_id is None else keys[1:]
        ttl_ms = FENCE_TTL_S * 1000
        self._run(lambda pipe: self._call(pipe, "fence", chosen, [ttl_ms]))
        self._forget_remembered([self.context_key(user_id, secretary_id)] if secretary_id else [])

    def context_key(self, user_id: int, secretary_id: uuid.UUID) -> str:
        """The list holding one context's messages."""
        return self.CONTEXT_KEY.format(prefix=self.prefix, user=user_id, secretary=secretary_id.hex)

    def user_index_key(self, user_id: int) -> str:
        """The sorted set of one user's contexts."""
        return self.USER_INDEX_KEY.format(prefix=self.prefix, user=user_id)

    def secretary_index_key(self, secretary_id: uuid.UUID) -> str:
        """The sorted set of one secretary's contexts."""
        return self.SECRETARY_INDEX_KEY.format(prefix=self.prefix, secretary=secretary_id.hex)

    def lua_templates(self) -> list[str]:
        """The context, user index and secretary index key templates with `%s` for the
        user and the secretary, and the activity key: what a script that finds keys by
        itself (the purge batch) is given, so each key is defined here only."""
        prefix = self.prefix.replace("%", "%%")  # literal in Lua's string.format
        return [
            self.CONTEXT_KEY.format(prefix=prefix, user="%s", secretary="%s"),
            self.USER_INDEX_KEY.format(prefix=prefix, user="%s"),
            self.SECRETARY_INDEX_KEY.format(prefix=prefix, secretary="%s"),
            self.activity_key,
        ]

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

    @staticmethod
    def _call(pipe: Any, script: str, keys: list[str], args: list[Any]) -> None:
        # execute_command: a ClusterPipeline has no evalsha() but routes EVALSHA by its keys.
        pipe.execute_command("EVALSHA", SCRIPTS[script][1], len(keys), *keys, *args)

    def _run(self, build: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """Queue commands with `build`, execute them in one pipeline, map failures."""

        async def load() -> None:
            for body, _sha in SCRIPTS.values():
                self.client.script_load(body)

        async def execute() -> list[Any]:
            pipe = self.client.pipeline(transaction=transaction and not self.cluster)
            build(pipe)
            return list(pipe.execute())

        return _blocking(self._with_scripts(load, execute))

    async def _arun(self, build: Callable[[Any], None]) -> list[Any]:
        """`_run` on this loop's redis.asyncio client (same pipeline, same script reload)."""
        assert self._async_clients is not None
        client = self._async_clients.get()

        async def execute() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            build(pipe)
            return list(await pipe.execute())

        return await self._with_scripts(lambda: _load_scripts(client), execute)

    async def _with_scripts(
        self, load: Callable[[], Awaitable[None]], execute: Callable[[], Awaitable[T]]
    ) -> T:
        """The one loop of both clients: a server that lost its scripts gets them again once;
        an unreachable one is `BackendUnavailable`. (SCRIPT LOAD reaches every primary of a
        cluster; EVALSHA then sends only the hash.)"""
        for attempt in (1, 2):
            try:
                if not self._scripts_loaded:
                    await load()
                    self._scripts_loaded = True
                return await execute()
            except ResponseError as exc:
                if not lost_scripts(exc) or attempt == 2:
                    raise
                self._scripts_loaded = False
            except UNAVAILABLE as exc:
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
        """Queue the script calls that push `messages` (one context's) and touch indexes."""
        for script, keys, args in self._push_calls(user_id, secretary_id, messages, rules):
            self._call(pipe, script, keys, args)

    def _push_calls(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        messages: list[Message],
        rules: ContextPolicy,
        since: float | None = None,
    ) -> list[tuple[str, list[str], list[Any]]]:
        """The script calls that push `messages` (one context's) and touch the indexes."""
        now = repr(score(self.clock()))
        ttl_ms = int(rules.ttl.total_seconds() * 1000)
        bodies = [encode(message) for message in messages]
        keys, members, elsewhere = self._push_keys_of(user_id, secretary_id)
        calls: list[tuple[str, list[str], list[Any]]] = [
            (
                "push",
                keys,
                [
                    guard(messages),
                    rules.max_messages,
                    ttl_ms,
                    now,
                    len(bodies),
                    *bodies,
                    "" if since is None else f"{since * 1000:.0f}",
                    *members,
                ],
            )
        ]
        calls += [("touch", [key], [ttl_ms, now, member]) for key, member in elsewhere]
        return calls

    def _push_keys_of(self, user_id: int, secretary_id: uuid.UUID) -> _PushKeys:
        """What every push of one context names (kept: see `_push_keys`)."""
        return each_once(
            self._push_keys, [(user_id, secretary_id)], self._make_push_keys, PUSH_KEYS_CAP
        )[0]

    def _make_push_keys(self, context: tuple[int, uuid.UUID]) -> _PushKeys:
        user_id, secretary_id = context
        indexes = [
            (self.user_index_key(user_id), secretary_id.hex),
            (self.secretary_index_key(secretary_id), str(user_id)),
            (self.activity_key, f"{user_id}:{secretary_id.hex}"),
            (self.secretaries_key, secretary_id.hex),
        ]
        # One script call on a single server; on a cluster the user's own slot (list and
        # user index) in one call, and each global index in its own.
        local, elsewhere = (indexes[:1], indexes[1:]) if self.cluster else (indexes, [])
        keys = [
            self.context_key(user_id, secretary_id),
            *self.fence_keys(user_id, secretary_id),
            *(k for k, _ in local),
        ]
        return _PushKeys(keys, [m for _, m in local], elsewhere)

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
        self._forget_remembered([self.context_key(user_id, secretary_id)])

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
            self._forget_remembered(self.context_key(u, s) for u, s, _m in pending)

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

    def _calls(self, chosen: list[tuple[str, list[str], list[Any]]]) -> Callable[[Any], None]:
        """A pipeline builder queueing these script calls."""

        def build(pipe: Any) -> None:
            for call in chosen:
                self._call(pipe, *call)

        return build

    def append_since(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        since: float,
        *,
        policy: ContextPolicy | None = None,
    ) -> int:
        """`aappend_many(..., since=...)` for blocking callers: the pushes check the fences
        in their script (`Fenced`), then, on a cluster, the global indexes are touched."""
        rules = policy or self.policy
        calls = [
            call
            for (user_id, secretary_id), messages in _by_context(items)
            for call in self._push_calls(user_id, secretary_id, messages, rules, since)
        ]

        pushes = self._run(self._calls([c for c in calls if c[0] == "push"]))
        self._forget_remembered(self.context_key(u, s) for u, s, _m in items)
        written = _pushed(pushes, len(items))
        touching = [c for c in calls if c[0] != "push"]
        if touching:
            self._run(self._calls(touching))
        return written

    def clear(self, user_id: int, secretary_id: uuid.UUID) -> bool:
        """Delete one context and its index entries (fenced first: see fences.py)."""
        self.fence(user_id, secretary_id)
        return self._delete_pairs([(user_id, secretary_id)], ANY_AGE, from_index=False) > 0

    # -- reads ----------------------------------------------------------------------------

    def read(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """One script call: the context's newest messages as one JSON array."""
        start = -limit if limit is not None else 0
        key = self.context_key(user_id, secretary_id)
        raw = self._run(lambda pipe: self._call(pipe, "read", [key], [start]))[0]
        return decode_joined(raw)

    async def aread(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """`read` on this loop's lane (from memory when current), else its async client."""
        key = self.context_key(user_id, secretary_id)
        lane = self.lanes.current()
        if lane is not None:
            try:
                return await self._with_scripts(lane.load_scripts, lambda: lane.read(key, limit))
            except LaneUnsupported as exc:
                self.lanes.give_up(exc)
        if self._async_clients is None:
            return await super().aread(user_id, secretary_id, limit)
        start = -limit if limit is not None else 0
        return decode_joined(await self._aeval("read", [key], [start]))

    async def _aeval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """One script call on this loop's async client, without a pipeline around it."""
        assert self._async_clients is not None
        client = self._async_clients.get()

        async def execute() -> list[Any]:
            sha = SCRIPTS[script][1]
            return [await client.execute_command("EVALSHA", sha, len(keys), *keys, *args)]

        return (await self._with_scripts(lambda: _load_scripts(client), execute))[0]

    async def aappend_many(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
        since: float | None = None,
    ) -> int:
        """All of `items` in one pipelined round trip on this loop's async client;
        `Fenced` when `since` is older than a fence of one of the contexts."""
        if self._async_clients is None:
            return await super().aappend_many(items, policy=policy, since=since)
        rules = policy or self.policy
        calls = [
            call
            for (user_id, secretary_id), messages in _by_context(items)
            for call in self._push_calls(user_id, secretary_id, messages, rules, since)
        ]
        if len(calls) == 1:
            # A turn on a single server: one command, without a pipeline around it.
            lane = self.lanes.current()
            if lane is not None:
                _script, keys, args = calls[0]
                try:
                    pushed = await self._with_scripts(
                        lane.load_scripts, lambda: lane.push(keys, args)
                    )
                    self.lanes.forget(keys[:1], but=lane)
                    return _written(pushed, len(items))
                except LaneUnsupported as exc:
                    self.lanes.give_up(exc)
            pushed = await self._aeval(*calls[0])
            self._forget_remembered(self.context_key(u, s) for u, s, _m in items)
            return _written(pushed, len(items))

        # On a cluster the global indexes are touched by calls of their own: only after
        # the pushes, so a push refused by a fence leaves no index entry naming the user.
        pushing = [call for call in calls if call[0] == "push"]
        touching = [call for call in calls if call[0] != "push"]

        pushes = await self._arun(self._calls(pushing))
        self._forget_remembered(self.context_key(u, s) for u, s, _m in items)
        written = _pushed(pushes, len(items))
        if touching:
            await self._arun(self._calls(touching))
        return written

    def reads_from_memory(self) -> int:
        """Context reads the lanes of the open event loops answered from memory."""
        return self.lanes.hits()

    def _forget_remembered(self, keys: Iterable[str] | None) -> None:
        """After a write: no lane of the process may answer from what it remembered."""
        self.lanes.forget(keys)

    async def aclose(self) -> None:
        """Close the running loop's async client and lane."""
        if self._async_clients is not None:
            await self._async_clients.aclose_current(_aclose_client)
        await self.lanes.aclose()

    def close(self) -> None:
        """Close the clients if this store created them."""
        super().close()
        if self._async_clients is not None:
            self._async_clients.close_all(_aclose_client)
        self.lanes.close()
        if self._owns_client:
            self.client.close()


async def _load_scripts(client: Any) -> None:
    """SCRIPT LOAD of every script on an asyncio client (a cluster's: on every primary)."""
    for body, _sha in SCRIPTS.values():
        await client.script_load(body)


async def _aclose_client(client: Any) -> None:
    await client.aclose()


def _blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (its awaits are blocking calls) to its result."""
    try:
        work.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    work.close()
    raise RuntimeError("a blocking Redis call suspended")


def _written(pushed: Any, count: int) -> int:
    """What one push script's answer means: `count` written, 0 (stored already), or
    `Fenced` (-1: the turn began before a fence)."""
    found = int(pushed or 0)
    if found < 0:
        raise Fenced("the conversation was cleared or its user erased meanwhile")
    return count if found else 0


def _pushed(pushes: list[Any], count: int) -> int:
    """What a batch of push scripts' answers mean: `Fenced` if any was refused by a fence
    (-1); 0 when one turn's guard found it stored (what `commit` asks); else `count`."""
    if any(int(found) < 0 for found in pushes):
        raise Fenced("the conversation was cleared or its user erased meanwhile")
    return 0 if len(pushes) == 1 and not pushes[0] else count


def _by_context(
    items: Iterable[tuple[int, uuid.UUID, Message]],
) -> Iterator[tuple[tuple[int, uuid.UUID], list[Message]]]:
    """Consecutive messages of one context together (a turn is pushed by one call)."""
    for pair, group in groupby(items, key=lambda item: (item[0], item[1])):
        yield pair, [message for _u, _s, message in group]
