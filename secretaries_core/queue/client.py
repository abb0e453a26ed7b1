"""The queue's Redis side: enqueue once per update, publish a reply once, ack, dead-letter.

Every operation that must be atomic is one Lua call on keys of one cluster slot (see
keys.py). Streams never grow without bound: an answered entry is XACKed and XDELed in one
pipeline, and the replies and dead-letter streams are capped with `MAXLEN ~`; every other
key has a TTL.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from secretaries_core.config import QUEUE_SCHEMES, Settings
from secretaries_core.conversation.text import check_storable
from secretaries_core.errors import (
    BackendUnavailable,
    Conflict,
    InvalidInput,
    SecretariesError,
    UnstorableInput,
)
from secretaries_core.plumbing import tracing
from secretaries_core.plumbing.loops import PerLoop
from secretaries_core.queue.coalesce import ScriptBatches, script_sha
from secretaries_core.queue.keys import GROUP, QueueKeys
from secretaries_core.redact import mask_url

SEEN_TTL_S = 2 * 24 * 3600  # Telegram redelivers an update for at most a day
INBOUND_CAP = 1_000_000  # per partition: a safety valve, far above any healthy backlog
ENQUEUE_SPAN = "secretaries.enqueue"
TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
WEBHOOK_SEEN_S = SEEN_TTL_S  # a webhook update id is taken once within this window
REPLIES_CAP = 100_000
STATS_MAX_AGE_S = 10.0  # /metrics shows the queue as of at most this long ago
DEAD_CAP = 100_000
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, RedisClusterException)

# Adds an entry once per member of a user's marker set: enqueue (KEYS: the user's seen
# set, inbound stream) and publish a reply (KEYS: the user's sent set, replies stream, and
# the user's erase fence). The set's members expire one by one (score: until when, on the
# server's clock), the key with the newest. ARGV: ttl (s), cap, member, since (ms: when
# the update was queued; a fence at or after it refuses the entry: -1), then field/value
# pairs.
_ADD_ONCE = """
if #KEYS >= 3 then
  local fenced = redis.call('GET', KEYS[3])
  if fenced and tonumber(fenced) >= tonumber(ARGV[4]) then return -1 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]) * 1000, ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 1000)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 5))
return 1
"""
# A piece of a reply being written (KEYS: live stream, the user's erase fence); ARGV:
# since (ms), cap, ttl (s), then field/value pairs. Refused (0) after a fence.
LIVE_ADD = """
local fenced = redis.call('GET', KEYS[2])
if fenced and tonumber(fenced) >= tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
# Adds an entry once per marker key (dead letters: KEYS: buried marker, dead stream).
# ARGV: ttl, cap, then field/value pairs.
_ADD_ONCE_KEY = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
  return 1
end
return 0
"""
# Queues a dead letter again, once per letter (KEYS: retried marker, the user's failed
# attempts, inbound stream; one partition's slot). ARGV: ttl, cap, the update id (its
# failed attempts start again), then field/value pairs. The letter is deleted from the
# dead letters afterwards: a crash in between leaves it there, and a rerun finds the
# marker and only deletes it.
_REQUEUE_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  if ARGV[3] ~= '' then redis.call('HDEL', KEYS[2], ARGV[3]) end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
  return 1
end
return 0
"""

FAILS_TTL_S = 2 * 24 * 3600
# Stream fields that are ours: everything else in an entry is unknown.
UPDATE_FIELDS = (
    "update_id",
    "telegram_id",
    "text",
    "username",
    "chat_id",
    "thread_id",
    "retry",
    "traceparent",
    "resumed",
    "began_ms",
)


class MalformedEntry(SecretariesError):
    """A stream entry that is not an update this queue can answer; says why."""


@dataclass(frozen=True)
class Update:
    """One incoming message as the bot received it (SPEC: POST /api/updates)."""

    update_id: int
    telegram_id: int
    text: str
    username: str | None = None
    chat_id: int | None = None
    # The forum topic the message came from: the reply goes back into it.
    thread_id: int | None = None
    # The dead letter this entry queues again (`queue retry`): its answer is a new one.
    retry: str = ""
    # W3C trace context of the span that queued it (tracing on): the worker continues it.
    traceparent: str = ""
    # Queued again once the user decided on a parked approval (queue/approvals.py): the
    # approval's id, and when the update first arrived (ms; its fences still apply).
    resumed: str = ""
    began_ms: int = 0

    @property
    def chat(self) -> int:
        """The chat the reply goes to (the user's private chat unless a chat is named)."""
        return self.chat_id if self.chat_id is not None else self.telegram_id

    def fields(self) -> dict[str, str]:
        """The stream entry."""
        fields = {
            "update_id": str(self.update_id),
            "telegram_id": str(self.telegram_id),
            "text": self.text,
            "username": self.username or "",
            "chat_id": str(self.chat),
        }
        if self.thread_id is not None:
            fields["thread_id"] = str(self.thread_id)
        if self.retry:
            fields["retry"] = self.retry
        if self.traceparent:
            fields["traceparent"] = self.traceparent
        if self.resumed:
            fields["resumed"] = self.resumed
            fields["began_ms"] = str(self.began_ms)
        return fields

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> Update:
        """An update back from a stream entry; `MalformedEntry` says what is wrong with it.

        Anything can be written into a stream (an old version, a hand-made XADD), so every
        field is checked here, before an entry can reach the message path.
        """
        from secretaries_core.catalog.refs import MAX_TELEGRAM_ID

        for name in ("update_id", "telegram_id", "text"):
            if name not in fields:
                raise MalformedEntry(f"no {name} field")
        for name, value in fields.items():
            if name in UPDATE_FIELDS:
                try:
                    check_storable(value, name)
                except UnstorableInput:
                    raise MalformedEntry(f"{name} is not valid UTF-8 text") from None
        update_id = _integer(fields, "update_id", 0, MAX_TELEGRAM_ID)
        telegram_id = _integer(fields, "telegram_id", 1, MAX_TELEGRAM_ID)
        chat_id = (
            _integer(fields, "chat_id", -MAX_TELEGRAM_ID, MAX_TELEGRAM_ID)
            if fields.get("chat_id")
            else None
        )
        thread_id = (
            _integer(fields, "thread_id", 1, MAX_TELEGRAM_ID) if fields.get("thread_id") else None
        )
        if not fields["text"].strip():
            raise MalformedEntry("empty text")
        username = fields.get("username") or None
        retry = fields.get("retry", "")
        parent = fields.get("traceparent", "")
        resumed = fields.get("resumed", "")
        began = fields.get("began_ms", "")
        return cls(
            update_id,
            telegram_id,
            fields["text"],
            username,
            chat_id,
            thread_id,
            retry,
            parent if TRACEPARENT.fullmatch(parent) else "",
            resumed if resumed.isalnum() else "",
            int(began) if began.isascii() and began.isdigit() else 0,
        )


def parse_int(raw: str) -> int | None:
    """A stream field holding a decimal integer (an optional minus sign), else None."""
    digits = raw[1:] if raw.startswith("-") else raw
    return int(raw) if digits.isascii() and digits.isdigit() else None


def _integer(fields: Mapping[str, str], name: str, low: int, high: int) -> int:
    raw = fields[name]
    value = parse_int(raw)
    if value is None or not low <= value <= high:
        raise MalformedEntry(f"{name} {raw[:40]!r} is not an integer in {low}..{high}")
    return value


def _flat(fields: Mapping[str, str]) -> list[str]:
    return [part for pair in fields.items() for part in pair]


def decode_fields(raw: Any) -> dict[str, str]:
    """A stream entry's fields as text.

    Bytes that are not UTF-8 are kept as lone surrogates (`surrogateescape`), never an
    exception: `Update.of` then refuses the entry with a reason instead of a crash.
    """
    items = (
        list(raw.items()) if isinstance(raw, dict) else list(zip(raw[::2], raw[1::2], strict=True))
    )
    return {_text(k): _text(v) for k, v in items}


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def printable_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """`fields` safe to write back to Redis and to show (undecodable bytes escaped)."""
    return {
        k.encode("utf-8", "backslashreplace").decode(): v.encode(
            "utf-8", "backslashreplace"
        ).decode()
        for k, v in fields.items()
    }


def entry_age_s(entry_id: str, now_ms: float | None = None) -> float:
    """Seconds since a stream entry id was made (its first part is milliseconds)."""
    now_ms = now_ms if now_ms is not None else time.time() * 1000
    return max(0.0, (now_ms - int(entry_id.split("-")[0])) / 1000)


class Queue:
    """The queue of one deployment: sync calls for admin, async ones for the hot path."""

    def __init__(self, url: str, *, prefix: str = "secretaries:", partitions: int = 16) -> None:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        self.masked = mask_url(url)
        if scheme not in QUEUE_SCHEMES:
            raise InvalidInput(
                f"the queue needs Redis: SECRETARIES_QUEUE_URL (or the context URL) must be "
                f"redis://, rediss:// or redis+cluster://, not {self.masked!r}"
            )
        self.url = url
        self.cluster = scheme == "redis+cluster"
        self.keys = QueueKeys(prefix, partitions)
        self._sync: Any = None
        self._async: PerLoop[Any] = PerLoop(self._make_async)
        # Enqueues of one loop tick share a round trip (coalesce.py). A cluster's go one
        # by one: its pipelines are split by slot and node, a path not measured here.
        self._enqueues: PerLoop[ScriptBatches] = PerLoop(lambda: ScriptBatches(self.aclient))
        self._last_stats: tuple[float, dict[str, Any]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Queue:
        """The queue of `SECRETARIES_QUEUE_URL`, else of the context URL (Redis only)."""
        return cls(
            settings.require_queue(),
            prefix=settings.redis_prefix,
            partitions=settings.queue_partitions,
        )

    @classmethod
    def if_configured(cls, settings: Settings) -> Queue | None:
        """The queue `from_settings` would open, or None when no Redis URL is configured
        (an erase must also reach a queue its workers use: the context URL's by default)."""
        url = settings.queue_address()
        if url is None:
            return None
        return cls(url, prefix=settings.redis_prefix, partitions=settings.queue_partitions)

    # -- clients --------------------------------------------------------------------------

    def _make_async(self) -> Any:
        from secretaries_core.context.redis_clients import redis_client

        return redis_client(self.url, asynchronous=True, block_s=5.0)

    def client(self) -> Any:
        """The blocking client (admin commands)."""
        if self._sync is None:
            from secretaries_core.context.redis_clients import redis_client

            self._sync = redis_client(self.url, asynchronous=False, block_s=5.0)
        return self._sync

    def aclient(self) -> Any:
        """The running loop's async client."""
        return self._async.get()

    def unavailable(self, exc: BaseException) -> BackendUnavailable:
        """The error for a queue server that cannot be reached."""
        return BackendUnavailable(f"cannot reach the queue {self.masked}: {exc}")

    async def aclose(self) -> None:
        """Close the running loop's client."""

        async def close(client: Any) -> None:
            await client.aclose()

        await self._async.aclose_current(close)

    def close(self) -> None:
        """Close every client."""

        async def close(client: Any) -> None:
            await client.aclose()

        self._async.close_all(close)
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    # -- the queue's shape ----------------------------------------------------------------

    def _shape_error(self, found: Any) -> Conflict | None:
        recorded = int(found)
        if recorded == self.keys.partitions:
            return None
        return Conflict(
            f"the queue {self.masked} has {recorded} partitions, but this process is "
            f"configured with {self.keys.partitions} (SECRETARIES_QUEUE_PARTITIONS): set it to "
            f"{recorded}",
            hint=", or stop every worker and run "
            f"`secretaries queue repartition {self.keys.partitions}`",
        )

    def check_partitions(self) -> None:
        """Record the partition count on first use; `Conflict` when another is recorded.

        A message's partition is `telegram_id % partitions`: processes that disagree would
        split one user's messages over two streams (answered concurrently, out of order).
        """
        key = str(self.keys.partitions)
        try:
            client = self.client()
            client.set(self.keys.partitions_key, key, nx=True)
            error = self._shape_error(client.get(self.keys.partitions_key) or key)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        if error is not None:
            raise error

    async def acheck_partitions(self) -> None:
        """`check_partitions` on the running loop's client."""
        key = str(self.keys.partitions)
        client = self.aclient()
        await client.set(self.keys.partitions_key, key, nx=True)
        error = self._shape_error(await client.get(self.keys.partitions_key) or key)
        if error is not None:
            raise error

    def recorded_partitions(self) -> int | None:
        """The partition count recorded for this queue, if any process used it yet."""
        try:
            found = self.client().get(self.keys.partitions_key)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        return int(found) if found is not None else None

    # -- ingress --------------------------------------------------------------------------

    async def aenqueue(self, update: Update) -> bool:
        """Queue `update` unless its id was queued before; True when queued now."""
        if tracing.tracer() is None:
            return await self._aenqueue(update)
        with tracing.span(ENQUEUE_SPAN, {"messaging.system": "redis"}, kind="producer") as span:
            if span is not None:
                update = replace(update, traceparent=tracing.traceparent())
            return await self._aenqueue(update)

    async def _aenqueue(self, update: Update) -> bool:
        n = self.keys.partition(update.telegram_id)
        keys = [self.keys.seen(n, update.telegram_id), self.keys.inbound(n)]
        args = (
            SEEN_TTL_S,
            INBOUND_CAP,
            update.update_id,
            0,  # no fence for a new message
            *_flat(update.fields()),
        )
        try:
            if self.cluster:
                done = await self._ascript(_ADD_ONCE, 2, *keys, *args)
            else:
                done = await self._enqueues.get().run(_ADD_ONCE, 2, *keys, *args)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        return bool(done)

    async def _ascript(self, script: str, numkeys: int, *args: Any) -> Any:
        """Run one of this module's scripts by its SHA (the body is sent only when the
        server does not know it yet, after a restart): on the hot paths, sending and
        encoding the body on every call cost more than the call's own work."""
        client = self.aclient()
        try:
            return await client.evalsha(script_sha(script), numkeys, *args)
        except NoScriptError:
            return await client.eval(script, numkeys, *args)

    async def afirst_sighting(self, bot: int, update_id: int) -> bool:
        """True for the first replica to see webhook update `update_id` of `bot` within a
        day (Telegram resends an update it got no 200 for, to any replica)."""
        try:
            return bool(
                await self.aclient().set(
                    self.keys.webhook_update(bot, update_id), "1", nx=True, ex=WEBHOOK_SEEN_S
                )
            )
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    async def aforget_sighting(self, bot: int, update_id: int) -> None:
        """Let Telegram's next delivery of `update_id` be taken (this one failed)."""
        try:
            await self.aclient().delete(self.keys.webhook_update(bot, update_id))
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    def enqueue(self, update: Update) -> bool:
        """`aenqueue` for synchronous callers."""
        n = self.keys.partition(update.telegram_id)
        keys = [self.keys.seen(n, update.telegram_id), self.keys.inbound(n)]
        try:
            done = self.client().eval(
                _ADD_ONCE,
                2,
                *keys,
                SEEN_TTL_S,
                INBOUND_CAP,
                update.update_id,
                0,  # no fence for a new message
                *_flat(update.fields()),
            )
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        return bool(done)

    # -- the worker's side ----------------------------------------------------------------

    async def ensure_groups(self) -> None:
        """Create the consumer group on every partition stream (idempotent)."""
        for n in range(self.keys.partitions):
            await self.ensure_group(n)

    async def ensure_group(self, n: int) -> None:
        """Create partition `n`'s consumer group if it is missing (a Redis that lost it)."""
        await self.create_group(self.keys.inbound(n), GROUP, "0")

    async def create_group(self, key: str, group: str, start: str) -> None:
        """Create a consumer group on stream `key` from `start`, unless it exists."""
        try:
            await self.aclient().xgroup_create(key, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def persistence(self) -> bool:
        """True when the server keeps the queue across a restart (AOF or RDB snapshots)."""
        client = self.client()
        try:
            rules: str | None = _save_value(client.config_get("save"))
        except ResponseError:  # CONFIG disabled (managed Redis): only INFO can tell
            rules = None
        return _persistent(client.info("persistence"), rules)

    async def apersistence(self) -> bool:
        """`persistence`, from a running loop (a worker asks once, as it starts)."""
        return await asyncio.to_thread(self.persistence)

    async def publish(self, update: Update, fields: Mapping[str, str], since_ms: int = 0) -> bool:
        """Put the answer to `update` on the replies stream, once per (user, update id);
        refused with `Fenced` when the user was erased after `since_ms` (when the update
        was queued)."""
        keys = [
            self.keys.sent(update.telegram_id),
            self.keys.replies,
            self.keys.fence(update.telegram_id),
        ]
        # A dead letter queued again is a new answer: its member names the letter.
        member = f"{update.update_id}:{update.retry}" if update.retry else str(update.update_id)
        entry = {
            "update_id": str(update.update_id),
            "telegram_id": str(update.telegram_id),
            "chat_id": str(update.chat),
            **({"thread_id": str(update.thread_id)} if update.thread_id is not None else {}),
            **fields,
        }
        done = await self._ascript(
            _ADD_ONCE, 3, *keys, SEEN_TTL_S, REPLIES_CAP, member, since_ms, *_flat(entry)
        )
        if int(done) < 0:
            from secretaries_core.context.fences import Fenced

            raise Fenced("the user was erased while the answer was written")
        return bool(done)

    async def ack(self, n: int, entry_id: str) -> None:
        """Done with an entry: acknowledge it and delete it (the stream stays small)."""
        key = self.keys.inbound(n)
        pipe = self.aclient().pipeline(transaction=False)
        pipe.xack(key, GROUP, entry_id)
        pipe.xdel(key, entry_id)
        await pipe.execute()

    async def dead_letter(
        self, n: int, entry_id: str, fields: Mapping[str, str], error: str
    ) -> bool:
        """Keep an entry that failed for good, with its error, for `queue retry` (once)."""
        letter = {**printable_fields(fields), "error": error, "partition": str(n)}
        letter["entry"] = entry_id
        keys = [self.keys.buried(n, entry_id), self.keys.dead]
        done = await self._ascript(_ADD_ONCE_KEY, 2, *keys, SEEN_TTL_S, DEAD_CAP, *_flat(letter))
        return bool(done)

    async def failed_attempts(self, n: int, update: Update, *, add: bool) -> int:
        """Attempts at `update` that failed (not outages), counted across workers."""
        key, field = self.keys.fails(n, update.telegram_id), str(update.update_id)
        if not add:
            return int(await self.aclient().hget(key, field) or 0)
        pipe = self.aclient().pipeline(transaction=False)
        pipe.hincrby(key, field, 1)
        pipe.expire(key, FAILS_TTL_S)
        count, _ = await pipe.execute()
        return int(count)

    async def deliveries(self, n: int, entry_id: str) -> int:
        """How many times an entry was delivered (1 for a first delivery)."""
        found = await self.aclient().xpending_range(
            self.keys.inbound(n), GROUP, min=entry_id, max=entry_id, count=1
        )
        return int(found[0]["times_delivered"]) if found else 1

    # -- operations -----------------------------------------------------------------------

    def recent_stats(self, max_age: float = STATS_MAX_AGE_S) -> dict[str, Any]:
        """`stats()`, reused for `max_age` seconds: a scrape of every replica every few
        seconds would otherwise cost each one a round trip per partition and consumer."""
        now = time.monotonic()
        if self._last_stats is None or now - self._last_stats[0] > max_age:
            self._last_stats = (now, self.stats())
        return self._last_stats[1]

    def stats(self) -> dict[str, Any]:
        """Lengths, pending, oldest pending age, per-consumer lag, dead letters."""
        client = self.client()
        inbound = pending = 0
        oldest = 0.0
        consumers: dict[str, dict[str, Any]] = {}
        try:
            for n in range(self.keys.partitions):
                key = self.keys.inbound(n)
                inbound += int(client.xlen(key))
                try:
                    summary = client.xpending(key, GROUP)
                except ResponseError:  # no group yet: no worker ever started
                    continue
                pending += int(summary["pending"])
                if summary["pending"]:
                    first = summary["min"]
                    first = first.decode() if isinstance(first, bytes) else first
                    oldest = max(oldest, entry_age_s(first))
                for c in client.xinfo_consumers(key, GROUP):
                    name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
                    seen = consumers.setdefault(name, {"pending": 0, "idle_ms": c["idle"]})
                    seen["pending"] += int(c["pending"])
                    seen["idle_ms"] = min(seen["idle_ms"], int(c["idle"]))
            seconds, micros = client.time()  # the server's clock, as the beats are
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            live = client.zcount(self.keys.workers, now_ms - 60_000, "+inf")
            return {
                "persistence": self.persistence(),
                "inbound": inbound,
                "pending": pending,
                "oldest_pending_age_s": round(oldest, 3),
                "consumers": consumers,
                "dead_letters": int(client.xlen(self.keys.dead)),
                "replies_stream": self.keys.replies,
                "replies": int(client.xlen(self.keys.replies)),
                "partitions": self.keys.partitions,
                "workers": int(live),
            }
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    def dead_letters(self, count: int = 1000) -> list[dict[str, str]]:
        """The dead letters, oldest first, each with its `id`."""
        try:
            rows = self.client().xrange(self.keys.dead, count=count)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        out = []
        for entry_id, fields in rows:
            item = decode_fields(fields)
            item["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            out.append(item)
        return out

    def retry(self, ids: list[str] | None = None) -> int:
        """Queue dead letters again (all of them with None); returns how many.

        Each letter is queued at most once however often this runs (a marker set in the
        same script as the XADD), then deleted from the dead letters: a crash between the
        two steps and a rerun never queue it twice, so never answer it twice.
        """
        letters = self.dead_letters(count=DEAD_CAP)
        chosen = [d for d in letters if ids is None or d["id"] in ids]
        if ids is not None:
            missing = set(ids) - {d["id"] for d in chosen}
            if missing:
                from secretaries_core.errors import NotFound

                raise NotFound(f"no dead letter {', '.join(sorted(missing))}")
        client = self.client()
        try:
            for letter in chosen:
                fields = {k: v for k, v in letter.items() if k in UPDATE_FIELDS}
                try:
                    n = int(letter.get("partition", ""))
                except ValueError:
                    n = 0
                user, update_id = fields.get("telegram_id", ""), fields.get("update_id", "")
                fails, field = self.keys.retried(n, letter["id"]), ""
                if user.isdigit():
                    n = self.keys.partition(int(user)) % self.keys.partitions
                    fails, field = self.keys.fails(n, int(user)), update_id
                n %= self.keys.partitions
                fields["retry"] = letter["id"]
                keys = [self.keys.retried(n, letter["id"]), fails, self.keys.inbound(n)]
                # A malformed letter goes back as it was: the worker dead-letters it again.
                client.eval(_REQUEUE_ONCE, 3, *keys, SEEN_TTL_S, INBOUND_CAP, field, *_flat(fields))
                client.xdel(self.keys.dead, letter["id"])
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        return len(chosen)

    def repartition(self, partitions: int) -> int:
        """Move every queued entry to `partitions` partitions, keeping each user's order;
        returns how many moved. Run with no worker running (the caller checks).

        The new count is recorded first and the old one kept until the move ends, so a
        rerun after a crash finds the entries still to move; each entry is added once (its
        update's dedupe marker in the new partition) before it is deleted where it was.
        """
        if partitions < 1:
            raise InvalidInput("the queue needs at least 1 partition")
        client = self.client()
        try:
            recorded = int(client.get(self.keys.partitions_key) or self.keys.partitions)
            started = client.get(self.keys.repartition)
            old = max(recorded, int(started)) if started is not None else recorded
            client.set(self.keys.repartition, old)
            client.set(self.keys.partitions_key, partitions)
            target = QueueKeys(self.keys.prefix, partitions)
            moved = 0
            for n in range(old):
                source = self.keys.inbound(n)
                moved += self._move_stream(client, n, source, target)
                if n >= partitions:
                    client.delete(source)
            client.delete(self.keys.repartition)
        except UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        return moved

    def _move_stream(self, client: Any, n: int, source: str, target: QueueKeys) -> int:
        moved, after = 0, "-"
        while True:
            found = client.xrange(source, min=after, count=500)
            rows = [(_text(i), decode_fields(f)) for i, f in found]
            if not rows:
                return moved
            after = "(" + rows[-1][0]
            for entry_id, fields in rows:
                user = parse_int(fields.get("telegram_id", ""))
                to = target.partition(user) if user is not None and user > 0 else n
                if target.inbound(to % target.partitions) == source:
                    continue  # this user's partition keeps its number: nothing to move
                to %= target.partitions
                update = fields.get("update_id", "")
                if fields.get("retry"):
                    update += ":" + fields["retry"]
                flat = _flat(fields)
                stream = target.inbound(to)
                if user is not None:  # once: a member of the user's seen set there
                    seen = target.seen(to, user)
                    member = update  # a later resend of it is still recognised there
                    args = [SEEN_TTL_S, INBOUND_CAP, member, 0, *flat]
                    client.eval(_ADD_ONCE, 2, seen, stream, *args)
                else:
                    marker = target.retried(to, f"moved-{entry_id}")  # in that partition's slot
                    client.eval(_ADD_ONCE_KEY, 2, marker, stream, SEEN_TTL_S, INBOUND_CAP, *flat)
                client.xdel(source, entry_id)
                moved += 1

    def iter_replies(self, after: str = "0-0") -> Iterator[tuple[str, dict[str, str]]]:
        """Replies after entry id `after`, oldest first (for tests and simple senders)."""
        client = self.client()
        while True:
            rows = client.xrange(self.keys.replies, min=f"({after}", count=1000)
            if not rows:
                return
            for entry_id, fields in rows:
                after = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                yield after, decode_fields(fields)


def _save_value(found: Any) -> str:
    raw = found.get("save", "") if isinstance(found, dict) else ""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _persistent(info: Any, save_rules: str | None) -> bool:
    """AOF on, or RDB snapshots configured (on every node of a cluster)."""
    nodes = info.values() if info and all(isinstance(v, dict) for v in info.values()) else [info]
    aof = all(int(node.get("aof_enabled", 0)) == 1 for node in nodes)
    return aof or bool(save_rules and save_rules.strip())
