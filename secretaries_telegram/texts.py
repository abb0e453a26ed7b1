"""What end users read: greetings, help, and one short line per failure."""

from __future__ import annotations

from datetime import datetime

from secretaries_core.errors import (
    Busy,
    InactiveSecretary,
    Interrupted,
    InvalidInput,
    ModelUnavailable,
    NoDefaultSecretary,
    QuotaExceeded,
    SecretariesError,
    UnknownSecretary,
)
from secretaries_core.plumbing.timeutil import utcnow

GREETING = "Hello! I pass your messages to your secretary, an AI assistant."
PICK = "Choose your secretary:"
HELP = (
    "Just write: your secretary answers.\n"
    "/secretary — choose your secretary\n"
    "/new — forget this conversation and start over\n"
    "/usage — what you used today, and your limits\n"
    "/help — this message"
)
FORGOTTEN = "Done: {name} has forgotten this conversation."
NOTHING_TO_FORGET = "There was nothing to forget."
SWITCHED = "You are now talking to {name}."
NOT_TEXT = "I can only read text messages."


def _until(moment: datetime) -> str:
    minutes = max(0, int((moment - utcnow()).total_seconds()) // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


_ERRORS: dict[str, type[SecretariesError]] = {
    cls.__name__: cls
    for cls in (
        Busy,
        InactiveSecretary,
        Interrupted,
        InvalidInput,
        ModelUnavailable,
        NoDefaultSecretary,
        QuotaExceeded,
        UnknownSecretary,
    )
}


def for_code(code: str, message: str) -> str:
    """`for_people` for an error known by its class name (a reply from the workers)."""
    kind = _ERRORS.get(code, SecretariesError)
    if kind is QuotaExceeded:
        return "You have used today's quota; it resets at midnight UTC."
    return for_people(kind(message))


def for_people(exc: SecretariesError) -> str:
    """One short line about `exc` for the end user (the details go to the log)."""
    if isinstance(exc, QuotaExceeded):
        if exc.resets_at is not None:
            return (
                f"You have used today's quota. It resets at {exc.resets_at:%H:%M} UTC "
                f"(in {_until(exc.resets_at)})."
            )
        return "You have used today's quota; it resets at midnight UTC."
    if isinstance(exc, NoDefaultSecretary):
        return "No secretary is available right now; please try again later."
    if isinstance(exc, InactiveSecretary | UnknownSecretary):
        return "That secretary is no longer available; choose another with /secretary."
    if isinstance(exc, ModelUnavailable):
        return "Your secretary is unavailable right now; please try again in a minute."
    if isinstance(exc, Busy):
        return "I am still answering your previous message; please wait for it."
    if isinstance(exc, Interrupted):
        return "Answering your newer message instead."
    if isinstance(exc, InvalidInput):
        return "I cannot take that message (too long, or characters I cannot store)."
    return "Something went wrong on my side; please try again."
