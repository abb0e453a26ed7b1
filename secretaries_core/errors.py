"""The typed errors of the library: everything it raises derives from `SecretariesError`."""

from __future__ import annotations

from datetime import datetime


class SecretariesError(Exception):
    """Base of every error the library raises on purpose."""

    def __init__(self, *args: object, hint: str = "") -> None:
        # Every message is scrubbed where it is made: an error text reaches logs, HTTP
        # bodies, replies and dead letters, and providers repeat keys back in theirs.
        from secretaries_core.redact import scrub

        texts = [scrub(a) if isinstance(a, str) else a for a in args]
        # `hint`: what to run next, in the CLI's words (it ends the message as printed;
        # `message` is the text without it, for callers that have no such commands).
        self.hint = scrub(hint)
        self.message = str(texts[0]) if texts else ""
        if self.hint and texts:
            texts[0] = f"{texts[0]}{self.hint}"
        super().__init__(*texts)


class NotFound(SecretariesError):
    """Something referred to does not exist."""


class UnknownUser(NotFound):
    """No registered user matches the reference."""


class UnknownSecretary(NotFound):
    """No secretary matches the name or id."""


class InactiveSecretary(SecretariesError):
    """The secretary exists but is deactivated."""


class NoDefaultSecretary(SecretariesError):
    """No secretary could be resolved because there is no active default."""


class Conflict(SecretariesError):
    """The request contradicts the current state (duplicate name, default deactivation, race)."""


class InvalidInput(SecretariesError):
    """A value given to the library is malformed (bad CSV row, bad duration, bad parameter)."""

    def __init__(self, message: str, problems: list[str] | None = None, *, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.problems: list[str] = problems or []


class NotASecretary(InvalidInput):
    """An assistant users cannot pick (`is_secretary` false) was given where users are."""


class UnstorableInput(InvalidInput):
    """Text no store can hold (a NUL, a lone surrogate, JSON nested too deep): CLI exit 2."""


def error_code(exc: SecretariesError) -> str:
    """The code clients see for `exc` (its class name; input no store can hold is
    `InvalidInput`, like any other invalid input)."""
    return "InvalidInput" if isinstance(exc, UnstorableInput) else type(exc).__name__


class SchemaOutOfDate(SecretariesError):
    """The database schema is not at the latest migration."""


class BackendUnavailable(SecretariesError):
    """A database or context store cannot be reached; the message names the masked URL."""


class ModelError(SecretariesError):
    """The secretary's model could not produce a reply (HTTP error, timeout, bad response)."""


class ModelUnavailable(ModelError, BackendUnavailable):
    """The model's server could not be reached or kept failing (timeouts, 429, 5xx)."""


class Busy(Conflict):
    """The user's previous message is still being answered and the policy is `reject`."""


class Interrupted(SecretariesError):
    """A newer message of the same user superseded this one (policy `interrupt`)."""


class QuotaExceeded(SecretariesError):
    """The user has used up a daily quota; the message says when it resets (`resets_at`)."""

    def __init__(self, message: str, resets_at: datetime | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at
