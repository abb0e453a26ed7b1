"""Request bodies and the error shape; responses reuse `secretaries_core.schemas`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from secretaries_core.refs import MAX_TELEGRAM_ID

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
    """A registered user and what registration did."""

    telegram_id: int
    username: str | None
    status: str


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


class HealthOut(BaseModel):
    """Backend checks."""

    database: str
    contexts: str
