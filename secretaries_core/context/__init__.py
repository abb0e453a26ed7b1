"""Per-user, per-secretary conversation context: the interface and its backends.

Backends are imported on first use, so the interface does not drag in redis or SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secretaries_core._lazy import lazy_exports

_EXPORTS = {
    "ContextPolicy": "secretaries_core.context.base",
    "ContextStats": "secretaries_core.context.base",
    "ContextStore": "secretaries_core.context.base",
    "ContextSummary": "secretaries_core.context.base",
    "Message": "secretaries_core.context.base",
    "open_context_store": "secretaries_core.context.factory",
    "RedisContextStore": "secretaries_core.context.redis_store",
    "SqlContextStore": "secretaries_core.context.sql",
}

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


__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
