"""Request bodies and the error shape; responses reuse `secretaries_core.catalog.schemas`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from secretaries_core.catalog.refs import MAX_TELEGRAM_ID

TelegramId = Annotated[int, Field(gt=0, le=MAX_TELEGRAM_ID)]
USER_PATTERN = r"^([1-9][0-9]{0,18}|@[A-Za-z0-9_]{1,64})$"


class ErrorBody(BaseModel):
    """What went wrong: a stable code and a sentence saying what to do."""

    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error response: `{"error": {"code", "message"}}`."""

    error: ErrorBody


class UserIn(BaseModel):
    """Register a user."""

    telegram_id: TelegramId
    username: str | None = Field(default=None, max_length=65)


class RegisteredOut(BaseModel):
    """A registered user and what registration did (the CLI's `users add --json`)."""

    telegram_id: int
    username: str | None
    status: str
    # The user whose username moved to this one (usernames are unique at any moment on
    # Telegram, so a holder here is stale), or null: the move is said, never silent.
    username_moved_from: int | None = None


class MigrateIn(BaseModel):
    """`migrate-users` options."""

    to: str | None = Field(default=None, max_length=100)
    from_: str | None = Field(default=None, alias="from", max_length=100)
    dry_run: bool = False
    batch_size: int = Field(default=10_000, gt=0, le=1_000_000)

    model_config = {"populate_by_name": True}


class PurgeIn(BaseModel):
    """`contexts purge` options; `older_than` is a DURATION such as `12h` or `7d`."""

    older_than: str | None = Field(default=None, max_length=20)
    user: str | None = Field(default=None, pattern=USER_PATTERN)
    secretary: str | None = Field(default=None, max_length=100)
    dry_run: bool = False


class MessageIn(BaseModel):
    """An incoming bot message."""

    user_id: TelegramId
    text: str = Field(min_length=1, max_length=32_000)
    username: str | None = Field(default=None, max_length=65)
    approve: bool = Field(
        default=False,
        description="Approve every call of a --confirm tool this message makes (else declined)",
    )


class HealthOut(BaseModel):
    """Backend checks."""

    database: str
    contexts: str


class UsageTotalsOut(BaseModel):
    """Messages and tokens (and cost, when the secretary has prices)."""

    messages: int
    prompt_tokens: int
    completion_tokens: int
    estimated_calls: int = Field(description="Calls whose counts are our estimate")
    tool_calls: int = Field(0, description="Tool calls made by the counted messages")
    cost: float | None = None


class UsageDayOut(UsageTotalsOut):
    """One UTC day of one secretary and model."""

    day: str
    secretary: str
    model: str


class UsageOut(UsageTotalsOut):
    """`GET /api/usage`: totals, per secretary name and per day."""

    by_secretary: dict[str, UsageTotalsOut]
    days: list[UsageDayOut]


class LimitsIn(BaseModel):
    """A user's own daily limits; null removes an override, an absent key keeps it."""

    messages_per_day: int | None = Field(default=None, ge=0, le=2**31 - 1)
    tokens_per_day: int | None = Field(default=None, ge=0, le=2**62)


class LimitsOut(BaseModel):
    """A user's own daily limits (null: not overridden)."""

    telegram_id: int
    messages_per_day: int | None
    tokens_per_day: int | None


class UpdateIn(BaseModel):
    """`POST /api/updates`: one Telegram message to queue for the workers."""

    update_id: int = Field(ge=0, le=2**63 - 1)
    telegram_id: int = Field(ge=1, le=2**63 - 1)
    text: str = Field(min_length=1, max_length=100_000)
    username: str | None = Field(default=None, max_length=64)
    chat_id: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)


class QueuedOut(BaseModel):
    """Whether the update was queued now (`duplicate`: its id was queued before)."""

    queued: bool
    duplicate: bool = False
