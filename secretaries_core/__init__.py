"""secretaries: per-user AI secretaries for chat bots — catalog, assignment and context."""

from secretaries_core.config import Settings
from secretaries_core.context import ContextPolicy, ContextStore, Message, open_context_store
from secretaries_core.errors import (
    BackendUnavailable,
    Conflict,
    InactiveSecretary,
    InvalidInput,
    ModelError,
    NoDefaultSecretary,
    NotFound,
    SchemaOutOfDate,
    SecretariesError,
    UnknownSecretary,
    UnknownUser,
)
from secretaries_core.models import Assistant, TelegramUser, UserSecretaryLink
from secretaries_core.orchestrator import Orchestrator, Reply
from secretaries_core.registry import SecretaryRegistry

__all__ = [
    "Assistant",
    "BackendUnavailable",
    "Conflict",
    "ContextPolicy",
    "ContextStore",
    "InactiveSecretary",
    "InvalidInput",
    "Message",
    "ModelError",
    "NoDefaultSecretary",
    "NotFound",
    "Orchestrator",
    "Reply",
    "SchemaOutOfDate",
    "SecretariesError",
    "SecretaryRegistry",
    "Settings",
    "TelegramUser",
    "UnknownSecretary",
    "UnknownUser",
    "UserSecretaryLink",
    "open_context_store",
]
