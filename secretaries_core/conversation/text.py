"""What a message must be before it reaches a model or a store, and what a reply may hold."""

from __future__ import annotations

from secretaries_core.catalog.refs import MAX_TELEGRAM_ID, normalize_username
from secretaries_core.errors import InvalidInput, UnstorableInput

REPLACEMENT = "\ufffd"


def check_incoming(
    telegram_id: object, text: object, username: object, *, max_chars: int
) -> str | None:
    """Refuse what cannot be answered and stored; returns the normalized username.

    Runs before any model call and any write: an id outside 1..2**63-1, a message that is
    not text, empty, longer than `max_chars`, or holding a NUL or a lone surrogate (which
    no store can encode) is `InvalidInput`.
    """
    if isinstance(telegram_id, bool) or not isinstance(telegram_id, int):
        raise InvalidInput(f"telegram id must be an integer, got {type(telegram_id).__name__}")
    if not 0 < telegram_id <= MAX_TELEGRAM_ID:
        raise InvalidInput(f"telegram id must be between 1 and 2**63-1, got {telegram_id}")
    if not isinstance(text, str):
        raise InvalidInput(f"the message must be text, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInput("the message is empty")
    if len(text) > max_chars:
        raise InvalidInput(
            f"the message is {len(text):,} characters long; the limit is {max_chars:,}"
        )
    check_storable(text, "the message")
    if username is not None and not isinstance(username, str):
        raise InvalidInput(f"the username must be text, got {type(username).__name__}")
    if username is not None:
        check_storable(username, "the username")
    return normalize_username(username)


def check_storable(text: str, what: str) -> None:
    """`UnstorableInput` for a NUL or a lone surrogate in `text` (named `what`)."""
    if "\x00" in text:
        raise UnstorableInput(f"{what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnstorableInput(f"{what} contains a lone surrogate (not valid Unicode)") from None


def storable(text: str) -> str:
    """A model's reply made storable everywhere: NULs and lone surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
