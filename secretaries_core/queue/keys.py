"""Key templates of the queue (rq style: one place names every key).

P is the prefix (`SECRETARIES_REDIS_PREFIX`). `{q<n>}` is the Redis Cluster hash tag of
partition n, so a partition's stream, its dedupe keys and its lease share one slot (what
one Lua call must touch atomically), while different partitions spread over the cluster.

    P q:{q<n>}:in               STREAM  inbound updates of the users of partition n
    P q:{q<n>}:seen:<update>    STRING  update ids already queued (TTL: dedupe window)
    P q:{q<n>}:lease            STRING  worker id owning partition n (PX lease)
    P q:{r}:replies             STREAM  answers (update_id, telegram_id, chat_id, ...)
    P q:{r}:sent:<update>       STRING  update ids already answered (TTL)
    P q:{d}:dead                STREAM  messages that failed for good, with their error
    P q:{w}:workers             ZSET    worker id -> last heartbeat (ms)
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"


@dataclass(frozen=True)
class QueueKeys:
    """Every key of one deployment's queue."""

    prefix: str = "secretaries:"
    partitions: int = 16

    INBOUND = "{prefix}q:{{q{n}}}:in"
    SEEN = "{prefix}q:{{q{n}}}:seen:{update}"
    LEASE = "{prefix}q:{{q{n}}}:lease"
    REPLIES = "{prefix}q:{{r}}:replies"
    SENT = "{prefix}q:{{r}}:sent:{update}"
    DEAD = "{prefix}q:{{d}}:dead"
    WORKERS = "{prefix}q:{{w}}:workers"

    def partition(self, telegram_id: int) -> int:
        """The partition of a user: all of one user's messages go through one stream."""
        return telegram_id % self.partitions

    def inbound(self, n: int) -> str:
        """Stream of partition `n`."""
        return self.INBOUND.format(prefix=self.prefix, n=n)

    def seen(self, n: int, update_id: int) -> str:
        """Dedupe marker of an update in partition `n`."""
        return self.SEEN.format(prefix=self.prefix, n=n, update=update_id)

    def lease(self, n: int) -> str:
        """Owner of partition `n`."""
        return self.LEASE.format(prefix=self.prefix, n=n)

    def sent(self, update_id: int | str) -> str:
        """Marker of an update already answered on the replies stream."""
        return self.SENT.format(prefix=self.prefix, update=update_id)

    @property
    def replies(self) -> str:
        """The outbound stream."""
        return self.REPLIES.format(prefix=self.prefix)

    @property
    def dead(self) -> str:
        """The dead-letter stream."""
        return self.DEAD.format(prefix=self.prefix)

    @property
    def workers(self) -> str:
        """Live workers and their heartbeats."""
        return self.WORKERS.format(prefix=self.prefix)
