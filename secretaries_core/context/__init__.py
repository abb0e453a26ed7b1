"""Per-user, per-secretary conversation context: the interface and its backends."""

from secretaries_core.context.base import (
    ContextPolicy,
    ContextStats,
    ContextStore,
    ContextSummary,
    Message,
)
from secretaries_core.context.factory import open_context_store
from secretaries_core.context.redis_store import RedisContextStore
from secretaries_core.context.sql import SqlContextStore

__all__ = [
    "ContextPolicy",
    "ContextStats",
    "ContextStore",
    "ContextSummary",
    "Message",
    "RedisContextStore",
    "SqlContextStore",
    "open_context_store",
]
