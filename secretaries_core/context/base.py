"""The `ContextStore` interface and the values it speaks in."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from secretaries_core.errors import InvalidInput

if TYPE_CHECKING:  # asyncio and a thread pool only for async callers: config imports this
    from secretaries_core.plumbing.hops import Hops

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(done, total)` while a purge works through its batches."""

PARAM_TTL = "context_ttl"
PARAM_MAX_MESSAGES = "context_max_messages"


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str
    content: str
    at: datetime
    metadata: Mapping[str, Any] | None = None

    @cached_property
    def update_key(self) -> str | None:
        """The queued update id this message belongs to, as text (None: not a queued one).

        Kept on the message: the turn guards look it up on each of the newest messages of
        a context at every write (the message's fields never change)."""
        value = (self.metadata or {}).get("update_id")
        return None if value is None else str(value)


# Metadata keys that identify a turn: a queued update's id, or the id the orchestrator
# gives every other turn. A batch carrying one is stored at most once per context, so a
# write retried after its reply was lost (a Redis or PostgreSQL failover) cannot double it.
TURN_KEYS = ("update_id", "turn")


def turn_item(messages: Iterable[Message]) -> tuple[str, Any] | None:
    """The metadata (key, value) identifying the turn `messages` belong to, the value as
    given (a number stays a number: stores that match stored text need it so)."""
    for message in messages:
        for key in TURN_KEYS:
            value = (message.metadata or {}).get(key)
            if value is not None:
                return key, value
    return None


def turn_id(messages: Iterable[Message]) -> tuple[str, str] | None:
    """The (key, value) identifying the turn `messages` belong to, the value as text."""
    item = turn_item(messages)
    return None if item is None else (item[0], str(item[1]))


@dataclass(frozen=True)
class ContextPolicy:
    """How long an idle context lives and how many messages it keeps."""

    ttl: timedelta
    max_messages: int

    def __post_init__(self) -> None:
        if self.ttl <= timedelta(0):
            raise InvalidInput("a context TTL must be positive")
        if self.max_messages <= 0:
            raise InvalidInput("a context must keep at least one message")

    def for_secretary(self, params: Mapping[str, Any]) -> ContextPolicy:
        """This policy with a secretary's `context_ttl` (seconds) / `context_max_messages`."""
        ttl, cap = self.ttl, self.max_messages
        try:
            if params.get(PARAM_TTL) is not None:
                ttl = timedelta(seconds=float(params[PARAM_TTL]))
            if params.get(PARAM_MAX_MESSAGES) is not None:
                cap = int(params[PARAM_MAX_MESSAGES])
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"bad context parameter in secretary params: {exc}") from exc
        return ContextPolicy(ttl, cap)


@dataclass(frozen=True)
class ContextSummary:
    """One stored context, for admin display."""

    user_id: int
    secretary_id: uuid.UUID
    messages: int
    last_activity: datetime


@dataclass(frozen=True)
class ContextStats:
    """Counts of live contexts and messages, in total and per secretary id."""

    contexts: int = 0
    messages: int = 0
    by_secretary: dict[uuid.UUID, tuple[int, int]] = field(default_factory=dict)


class ContextStore(ABC):
    """Per-(user, secretary) conversation context with a retention TTL and a message cap.

    `user_id` is the Telegram user id. Every write refreshes the context's expiry; reads
    never see an expired context; no call reaches another pair's messages.
    """

    policy: ContextPolicy
    # Blocking backends answer the async methods through this pool (made on first use,
    # or the owner's, given with `use_hops`).
    _hops: Hops | None = None
    _owns_hops: bool = True

    @abstractmethod
    def append(
        self,
        user_id: int,
        secretary_id: uuid.UUID,
        message: Message,
        *,
        policy: ContextPolicy | None = None,
    ) -> None:
        """Add a message, drop the oldest beyond the cap and refresh the expiry."""

    def append_many(
        self,
        items: Iterable[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
    ) -> int:
        """Append many messages (imports, seeding); backends batch the round trips."""
        count = 0
        for user_id, secretary_id, message in items:
            self.append(user_id, secretary_id, message, policy=policy)
            count += 1
        return count

    @abstractmethod
    def read(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """The last `limit` messages (all kept ones by default), oldest first."""

    @abstractmethod
    def clear(self, user_id: int, secretary_id: uuid.UUID) -> bool:
        """Forget one context; True if there was one."""

    @abstractmethod
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
        """Delete contexts and return how many (or, dry, would be).

        With `older_than`: those idle longer. With `user_id` and/or `secretary_id` and no
        `older_than`: all of them. With nothing: those idle longer than the retention.
        """

    def erase_user(self, user_id: int) -> int:
        """Delete every context of one user."""
        return self.purge(user_id=user_id)

    def erase_secretary(self, secretary_id: uuid.UUID) -> int:
        """Delete every context of one secretary."""
        return self.purge(secretary_id=secretary_id)

    @abstractmethod
    def stats(self) -> ContextStats:
        """Live contexts and messages, per secretary."""

    @abstractmethod
    def iter_contexts(
        self, *, user_id: int | None = None, secretary_id: uuid.UUID | None = None
    ) -> Iterator[ContextSummary]:
        """Live contexts, optionally of one user and/or one secretary."""

    # -- the async hot path: backends with a native async client override these ---------

    def hops(self) -> Hops:
        """The thread pool that runs this store's blocking calls for async callers."""
        if self._hops is None:
            from secretaries_core.plumbing.hops import Hops

            self._hops = Hops(name="secretaries-store")
        return self._hops

    def use_hops(self, hops: Hops) -> None:
        """Run blocking calls in the owner's pool, so one bound covers all of its SQL."""
        self._hops, self._owns_hops = hops, False

    async def aread(
        self, user_id: int, secretary_id: uuid.UUID, limit: int | None = None
    ) -> list[Message]:
        """`read` for async callers."""
        return await self.hops().run(self.read, user_id, secretary_id, limit)

    async def aappend_many(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        *,
        policy: ContextPolicy | None = None,
        since: float | None = None,
    ) -> int:
        """`append_many` for async callers. With `since` (epoch seconds: when the turn
        began) the write is refused with `Fenced` when one of the contexts was cleared, or
        its user erased, after that (see fences.py)."""
        if since is None:
            return await self.hops().run(self.append_many, items, policy=policy)
        return await self.hops().run(self.append_since, items, since, policy=policy)

    def append_since(
        self,
        items: list[tuple[int, uuid.UUID, Message]],
        since: float,
        *,
        policy: ContextPolicy | None = None,
    ) -> int:
        """`append_many`, refused with `Fenced` for a turn that began before a fence.

        The SQL and Redis stores check and write atomically (see fences.py); a store that
        keeps no fences writes as `append_many` does."""
        return self.append_many(items, policy=policy)

    def reads_from_memory(self) -> int:
        """Context reads answered without asking the backend, so far (most stores: 0)."""
        return 0

    async def aclose(self) -> None:  # noqa: B027  (optional: only async-client backends need it)
        """Release what the async methods opened on the running loop."""

    def close(self) -> None:
        """Release connections the store opened itself."""
        if self._hops is not None and self._owns_hops:
            self._hops.close()
        self._hops = None
