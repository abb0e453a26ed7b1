"""`open_context_store`: the configured database, Redis or Redis Cluster, chosen by URL."""

from __future__ import annotations

from sqlalchemy import Engine

from secretaries_core.context.base import ContextPolicy, ContextStore
from secretaries_core.context.redis_clients import (
    CLUSTER_SCHEME,
    REDIS_SCHEMES,
    encoded_userinfo,
    redis_client,
)
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.errors import InvalidInput
from secretaries_core.redact import mask_url

__all__ = ["open_context_store", "redis_client"]


def open_context_store(
    url: str | None,
    *,
    policy: ContextPolicy,
    engine: Engine | None = None,
    prefix: str = "secretaries:",
    remember: bool = True,
) -> ContextStore:
    """Open the store `url` names; None (or empty) means the database `engine` points at.

    `redis://`, `rediss://` and `unix://` open Redis; `redis+cluster://[:pw@]h1:p1,h2:p2`
    opens Redis Cluster from those seed nodes. Any other scheme is `InvalidInput`.
    `remember`: on one Redis server, read contexts over a tracked connection that serves
    them from memory while Redis reports no change (see `redis_lane`).
    """
    if not url:
        if engine is None:
            raise InvalidInput("the embedded context store needs the database engine")
        return SqlContextStore(engine, policy)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    masked = mask_url(url)
    if scheme in (*REDIS_SCHEMES, CLUSTER_SCHEME):
        # redis-py only for a Redis store: it costs ~60 ms of every start-up otherwise.
        from secretaries_core.context.redis_store import RedisContextStore

        return RedisContextStore(
            redis_client(url, asynchronous=False),
            policy,
            prefix=prefix,
            url=masked,
            owns_client=True,
            async_client=lambda: redis_client(url, asynchronous=True),
            lane=encoded_userinfo(url) if remember else None,  # none on a cluster
        )
    raise InvalidInput(
        f"unknown context store URL {masked!r}: use redis://, rediss://, redis+cluster:// "
        "or leave it unset to keep contexts in the database"
    )
