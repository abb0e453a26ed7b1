"""Key templates of the queue (rq style: one place names every key).

P is the prefix (`SECRETARIES_REDIS_PREFIX`). `{q<n>}` is the Redis Cluster hash tag of
partition n, so a partition's stream, its dedupe keys and its lease share one slot (what
one Lua call must touch atomically), while different partitions spread over the cluster.

    P q:{q<n>}:in               STREAM  inbound updates of the users of partition n
    P q:{q<n>}:seen:<user>      ZSET    update ids already queued -> until when (ms; dedupe
                                        window); the key's TTL is the newest one's
    P q:{q<n>}:fails:<user>     HASH    update id -> failed attempts at it (TTL)
    P q:{d}:buried:<n>:<entry>  STRING  entries of partition n already dead-lettered (TTL;
                                        beside the dead letters: one script adds both)
    P q:{q<n>}:lease            STRING  worker id owning partition n (PX lease)
    P q:{q<n>}:retried:<dead entry>   STRING  a dead letter already queued again (TTL)
    P q:{r}:replies             STREAM  answers (update_id, telegram_id, chat_id, ...)
    P q:{r}:sent:<user>         ZSET    update ids already answered -> until when (ms)
    P q:{r}:senders             ZSET    bot sender id -> last heartbeat (ms)
    P q:{r}:fence:<digest>      STRING  when a user was erased (ms): replies and live pieces
                                        of updates queued before are refused (TTL a day)
    P q:{r}:live                STREAM  pieces of replies being written (capped, TTL)
    P q:{r}:shown:<chat>:<update>     STRING  what a chat shows of a reply: a message id
                                        while it streams by edits, "final" once sent
    P q:{r}:shown:<chat>:<update>:lock STRING  held while one process touches that message
    P q:{r}:approval:<id>       STRING  a turn parked for the user's approval of a call: the
                                        update to resume, the call, the chat (JSON, TTL)
    P q:{r}:approval:<id>:msg   STRING  the id of the message with its Approve/Deny keyboard
    P q:{r}:approvals           ZSET    parked approval id -> when it times out (ms)
    P q:{r}:approvals_of:<user> SET     the user's parked approval ids (erasure)
    P tg:bots                   SET     ids of the bots whose flood keys exist (erasure)
    P tg:{h<bot>}:update:<id>   STRING  a webhook update already taken by a replica (TTL a
                                        day; holds no user data)
    P tg:{f<bot>}:bot / :chat:<c> / :group:<c>  ZSET  sends of the last window (flood)
    P tg:{f<bot>}:final:<c>     STRING  a final text waits for chat c: drafts give way
    P tg:{f<bot>}:hold:<c>      STRING  Telegram asked to wait (429): every process waits
                                        (c = "bot" for the bot as a whole)

An update is identified by (user, update id): Telegram's ids are unique per bot, but a
client that reuses one for two users gets both answered rather than one silently dropped.
The markers of one user are one key each (not one key per update), so erasing a user
deletes them without walking the keyspace.
    P q:{d}:dead                STREAM  messages that failed for good, with their error
    P q:{w}:workers             ZSET    worker id -> last heartbeat (ms)
    P q:{w}:partitions          STRING  the partition count the queue was made with
    P q:{w}:repartition         STRING  the count a `queue repartition` moves from
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
    SEEN = "{prefix}q:{{q{n}}}:seen:{user}"
    FAILS = "{prefix}q:{{q{n}}}:fails:{user}"
    BURIED = "{prefix}q:{{d}}:buried:{n}:{entry}"
    LEASE = "{prefix}q:{{q{n}}}:lease"
    RETRIED = "{prefix}q:{{q{n}}}:retried:{entry}"
    REPLIES = "{prefix}q:{{r}}:replies"
    SENT = "{prefix}q:{{r}}:sent:{user}"
    SENDERS = "{prefix}q:{{r}}:senders"
    FENCE = "{prefix}q:{{r}}:fence:{digest}"
    DEAD = "{prefix}q:{{d}}:dead"
    WORKERS = "{prefix}q:{{w}}:workers"
    PARTITIONS = "{prefix}q:{{w}}:partitions"
    REPARTITION = "{prefix}q:{{w}}:repartition"
    LIVE = "{prefix}q:{{r}}:live"
    SHOWN = "{prefix}q:{{r}}:shown:{chat}:{update}"
    FLOOD = "{prefix}tg:{{f{bot}}}:"
    BOTS = "{prefix}tg:bots"
    WEBHOOK_UPDATE = "{prefix}tg:{{h{bot}}}:update:{update}"
    APPROVAL = "{prefix}q:{{r}}:approval:{id}"
    APPROVALS = "{prefix}q:{{r}}:approvals"
    APPROVALS_OF = "{prefix}q:{{r}}:approvals_of:{user}"

    def partition(self, telegram_id: int) -> int:
        """The partition of a user: all of one user's messages go through one stream."""
        return telegram_id % self.partitions

    def inbound(self, n: int) -> str:
        """Stream of partition `n`."""
        return self.INBOUND.format(prefix=self.prefix, n=n)

    def seen(self, n: int, telegram_id: int) -> str:
        """The user's queued update ids in partition `n` (dedupe)."""
        return self.SEEN.format(prefix=self.prefix, n=n, user=telegram_id)

    def fails(self, n: int, telegram_id: int) -> str:
        """Failed attempts at the user's updates."""
        return self.FAILS.format(prefix=self.prefix, n=n, user=telegram_id)

    def buried(self, n: int, entry_id: str) -> str:
        """Marker of an entry of partition `n` already dead-lettered."""
        return self.BURIED.format(prefix=self.prefix, n=n, entry=entry_id)

    def lease(self, n: int) -> str:
        """Owner of partition `n`."""
        return self.LEASE.format(prefix=self.prefix, n=n)

    def retried(self, n: int, entry_id: str) -> str:
        """Marker of a dead letter already queued again into partition `n`."""
        return self.RETRIED.format(prefix=self.prefix, n=n, entry=entry_id)

    def sent(self, telegram_id: int | str) -> str:
        """The user's update ids already answered on the replies stream."""
        return self.SENT.format(prefix=self.prefix, user=telegram_id)

    def fence(self, telegram_id: int) -> str:
        """When the user was erased (named by a digest, never by the id)."""
        from secretaries_core.context.fences import user_digest

        return self.FENCE.format(prefix=self.prefix, digest=user_digest(telegram_id))

    def shown(self, chat: int, update_id: int | str) -> str:
        """What `chat` shows of the reply to `update_id` (streaming by edits, or final)."""
        return self.SHOWN.format(prefix=self.prefix, chat=chat, update=update_id)

    def flood(self, bot: int | str) -> str:
        """Prefix of the flood-control keys of one bot (one cluster slot for all of them)."""
        return self.FLOOD.format(prefix=self.prefix, bot=bot)

    def flood_chat(self, bot: int | str, chat: int) -> list[str]:
        """The flood-control keys of one chat of one bot (see secretaries_telegram/flood.py)."""
        prefix = self.flood(bot)
        return [f"{prefix}{part}:{chat}" for part in ("chat", "group", "final", "hold")]

    def approval(self, approval_id: str) -> str:
        """A parked approval's record (see the module docstring)."""
        return self.APPROVAL.format(prefix=self.prefix, id=approval_id)

    @property
    def approvals(self) -> str:
        """Parked approvals by when they time out."""
        return self.APPROVALS.format(prefix=self.prefix)

    def approvals_of(self, telegram_id: int) -> str:
        """The user's parked approval ids."""
        return self.APPROVALS_OF.format(prefix=self.prefix, user=telegram_id)

    def webhook_update(self, bot: int | str, update_id: int) -> str:
        """Set once a replica took webhook update `update_id` of `bot` (dedupe)."""
        return self.WEBHOOK_UPDATE.format(prefix=self.prefix, bot=bot, update=update_id)

    @property
    def bots(self) -> str:
        """The ids of the bots that sent through this deployment (their flood keys)."""
        return self.BOTS.format(prefix=self.prefix)

    @property
    def live(self) -> str:
        """The stream of pieces of replies being written."""
        return self.LIVE.format(prefix=self.prefix)

    @property
    def replies(self) -> str:
        """The outbound stream."""
        return self.REPLIES.format(prefix=self.prefix)

    @property
    def dead(self) -> str:
        """The dead-letter stream."""
        return self.DEAD.format(prefix=self.prefix)

    @property
    def senders(self) -> str:
        """Live bot senders and their heartbeats."""
        return self.SENDERS.format(prefix=self.prefix)

    @property
    def partitions_key(self) -> str:
        """The partition count recorded by the first process that used the queue."""
        return self.PARTITIONS.format(prefix=self.prefix)

    @property
    def repartition(self) -> str:
        """The partition count a repartition in progress moves entries from."""
        return self.REPARTITION.format(prefix=self.prefix)

    @property
    def workers(self) -> str:
        """Live workers and their heartbeats."""
        return self.WORKERS.format(prefix=self.prefix)
