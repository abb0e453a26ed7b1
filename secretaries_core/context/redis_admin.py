"""The admin side of the Redis context store: listing, stats and purges.

Everything here walks the sorted-set indexes (never KEYS or SCAN), so its cost grows with
what it reads or deletes. Mixed into `RedisContextStore`, whose keys and pipeline it uses.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from secretaries_core.context.base import (
    ContextPolicy,
    ContextStats,
    ContextSummary,
    ProgressCallback,
)
from secretaries_core.context.redis_scripts import ANY_AGE, UNAVAILABLE
from secretaries_core.errors import BackendUnavailable


def score(at: datetime) -> float:
    """A timestamp as a sorted-set score."""
    return at.timestamp()


def from_score(value: float) -> datetime:
    """A sorted-set score back as an aware UTC timestamp."""
    return datetime.fromtimestamp(value, tz=UTC)


class RedisAdmin:
    """Listing, stats and purges over the store's indexes."""

    client: Any
    cluster: bool
    prefix: str
    clock: Callable[[], datetime]
    policy: ContextPolicy

    @property
    def activity_key(self) -> str:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    @property
    def secretaries_key(self) -> str:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    def context_key(self, user_id: int, secretary_id: uuid.UUID) -> str:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    def user_index_key(self, user_id: int) -> str:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    def lua_templates(self) -> list[str]:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    def secretary_index_key(self, secretary_id: uuid.UUID) -> str:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    def _unavailable(self, exc: Exception) -> BackendUnavailable:  # pragma: no cover
        raise NotImplementedError

    def fence(
        self, user_id: int, secretary_id: uuid.UUID | None = None
    ) -> None:  # pragma: no cover
        """Defined by the store."""
        raise NotImplementedError

    def _run(
        self, build: Callable[[Any], None], *, transaction: bool = False
    ) -> list[Any]:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _call(pipe: Any, script: str, keys: list[str], args: list[Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _forget_remembered(self, keys: Iterable[str] | None) -> None:  # pragma: no cover
        raise NotImplementedError

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
                        yield ContextSummary(uid, sid, length, from_score(score))
        except UNAVAILABLE as exc:
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
        except UNAVAILABLE as exc:
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
        self._forget_remembered(self.context_key(u, s) for u, s in pairs)
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
        except UNAVAILABLE as exc:
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
        cutoff = score(self.clock() - older_than) if older_than is not None else ANY_AGE
        try:
            if user_id is not None:
                if not dry_run and older_than is None:
                    # All of a user's (or one context's): late writes are refused from now.
                    self.fence(user_id, secretary_id)
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
        except UNAVAILABLE as exc:
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
                    pipe,
                    "purge",
                    [],
                    [*self.lua_templates(), key, repr(cutoff), batch_size, only],
                )
            )
            examined, deleted = reply[0]
            if deleted:
                self._forget_remembered(None)
            if not examined:
                return done
            done += int(deleted)
            if progress:
                progress(done, max(total, done))
