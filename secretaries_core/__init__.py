"""secretaries: per-user AI secretaries for chat bots — catalog, assignment and context.

Names are imported on first use (PEP 562), so `import secretaries_core` stays cheap and
touches no database, network or heavy dependency until something is actually used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secretaries_core._lazy import lazy_exports

_EXPORTS = {
    "Settings": "secretaries_core.config",
    "SecretariesError": "secretaries_core.errors",
    "NotFound": "secretaries_core.errors",
    "UnknownUser": "secretaries_core.errors",
    "UnknownSecretary": "secretaries_core.errors",
    "InactiveSecretary": "secretaries_core.errors",
    "NoDefaultSecretary": "secretaries_core.errors",
    "Conflict": "secretaries_core.errors",
    "InvalidInput": "secretaries_core.errors",
    "SchemaOutOfDate": "secretaries_core.errors",
    "BackendUnavailable": "secretaries_core.errors",
    "ModelError": "secretaries_core.errors",
    "ModelUnavailable": "secretaries_core.errors",
    "Busy": "secretaries_core.errors",
    "Interrupted": "secretaries_core.errors",
    "QuotaExceeded": "secretaries_core.errors",
    "UnstorableInput": "secretaries_core.errors",
    "TelegramUser": "secretaries_core.catalog.models",
    "Assistant": "secretaries_core.catalog.models",
    "UserSecretaryLink": "secretaries_core.catalog.models",
    "SecretaryRegistry": "secretaries_core.catalog.registry",
    "ContextStore": "secretaries_core.context.base",
    "ContextPolicy": "secretaries_core.context.base",
    "Message": "secretaries_core.context.base",
    "open_context_store": "secretaries_core.context.factory",
    "Orchestrator": "secretaries_core.orchestrator",
    "Reply": "secretaries_core.orchestrator",
}

__all__ = [
    "Assistant",
    "BackendUnavailable",
    "Busy",
    "Conflict",
    "ContextPolicy",
    "ContextStore",
    "InactiveSecretary",
    "Interrupted",
    "InvalidInput",
    "Message",
    "ModelError",
    "ModelUnavailable",
    "NoDefaultSecretary",
    "NotFound",
    "Orchestrator",
    "QuotaExceeded",
    "Reply",
    "SchemaOutOfDate",
    "SecretariesError",
    "SecretaryRegistry",
    "Settings",
    "TelegramUser",
    "UnknownSecretary",
    "UnknownUser",
    "UnstorableInput",
    "UserSecretaryLink",
    "open_context_store",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from secretaries_core.catalog.models import Assistant, TelegramUser, UserSecretaryLink
    from secretaries_core.catalog.registry import SecretaryRegistry
    from secretaries_core.config import Settings
    from secretaries_core.context.base import ContextPolicy, ContextStore, Message
    from secretaries_core.context.factory import open_context_store
    from secretaries_core.errors import (
        BackendUnavailable,
        Busy,
        Conflict,
        InactiveSecretary,
        Interrupted,
        InvalidInput,
        ModelError,
        ModelUnavailable,
        NoDefaultSecretary,
        NotFound,
        QuotaExceeded,
        SchemaOutOfDate,
        SecretariesError,
        UnknownSecretary,
        UnknownUser,
        UnstorableInput,
    )
    from secretaries_core.orchestrator import Orchestrator, Reply
