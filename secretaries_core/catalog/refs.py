"""Parsing of the references operators type: users, key=value parameters."""

from __future__ import annotations

import json
import re
from typing import Any

from secretaries_core.errors import InvalidInput

MAX_TELEGRAM_ID = 2**63 - 1
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# A secretary's name (ASCII letters, digits, `.`, `_`, `-`; checked with fullmatch).
SECRETARY_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

UserRef = int | str
"""A Telegram user id, or a username written with its leading `@`."""


def parse_user_ref(text: str) -> UserRef:
    """Turn `123` into 123 and `@name` into "@name"; anything else is `InvalidInput`."""
    text = text.strip()
    name = text[1:]
    # One `@` only, and ASCII digits only: `@@x`, Arabic-Indic or full-width digits and `²`
    # are not users (int() would read the digits).
    if text.startswith("@") and not name.startswith("@") and USERNAME_RE.fullmatch(name):
        return text
    if text.isascii() and text.isdigit():
        return validate_telegram_id(int(text))
    raise InvalidInput(f"{text!r} is not a user: give a positive Telegram id or @username")


def validate_telegram_id(value: int) -> int:
    """Check that a Telegram id is a positive 64-bit integer."""
    if not 0 < value <= MAX_TELEGRAM_ID:
        raise InvalidInput(f"telegram id must be a positive 64-bit integer, got {value}")
    return value


def normalize_username(value: str | None) -> str | None:
    """Strip a leading `@` and check the characters; empty means no username."""
    if value is None:
        return None
    value = value.strip().removeprefix("@")
    if not value:
        return None
    if not USERNAME_RE.fullmatch(value):
        raise InvalidInput(f"invalid username {value!r}: use letters, digits and _ (at most 64)")
    return value


def parse_param(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` → (key, value); VALUE is JSON when it parses (0.7, true, [1]), else text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InvalidInput(f"parameter {text!r} is not KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def parse_params(items: list[str]) -> dict[str, Any]:
    """Parse several `KEY=VALUE` items; a later key wins."""
    return dict(parse_param(item) for item in items)
