"""secretaries: per-user AI secretaries for chat bots — catalog, assignment and context."""

from secretaries_core.config import Settings
from secretaries_core.errors import (
    BackendUnavailable,
    Conflict,
    InactiveSecretary,
    InvalidInput,
    NoDefaultSecretary,
    NotFound,
    SchemaOutOfDate,
    SecretariesError,
    UnknownSecretary,
    UnknownUser,
)
from secretaries_core.models import Assistant, TelegramUser, UserSecretaryLink
from secretaries_core.registry import SecretaryRegistry

__all__ = [
    "Assistant",
    "BackendUnavailable",
    "Conflict",
    "InactiveSecretary",
    "InvalidInput",
    "NoDefaultSecretary",
    "NotFound",
    "SchemaOutOfDate",
    "SecretariesError",
    "SecretaryRegistry",
    "Settings",
    "TelegramUser",
    "UnknownSecretary",
    "UnknownUser",
    "UserSecretaryLink",
]
