"""Validation of a `telegram_id,username` CSV file, whole, before anything is written."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from secretaries_core.catalog.refs import normalize_username, validate_telegram_id
from secretaries_core.errors import InvalidInput

HEADER = ("telegram_id", "username")


@dataclass(frozen=True)
class UserRow:
    """One valid row of the file."""

    telegram_id: int
    username: str | None


MAX_FIELD_CHARS = 1024  # far above any id or username; a longer field is a broken file


def _without_bom(lines: Iterable[str]) -> Iterator[str]:
    # Excel's "CSV UTF-8" starts with a byte order mark; it is not part of the header.
    first = True
    for line in lines:
        yield line.removeprefix("\ufeff") if first else line
        first = False


def parse_users_csv(lines: Iterable[str]) -> list[UserRow]:
    """Parse every row; if any is bad raise `InvalidInput` listing each bad line number."""
    # strict: an unterminated quote is an error instead of swallowing the rest of the file.
    reader = csv.reader(_without_bom(lines), strict=True)
    try:
        return _parse(reader)
    except csv.Error as exc:
        raise InvalidInput(
            f"not a valid CSV file: {exc}", [f"line {reader.line_num}: {exc}"]
        ) from None


def _parse(reader: Any) -> list[UserRow]:
    problems: list[str] = []
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header[:2]) != HEADER or len(header) > 2:
        raise InvalidInput(
            "the file must start with the header `telegram_id,username`",
            ["line 1: expected header telegram_id,username"],
        )
    rows: list[UserRow] = []
    first_seen: dict[int, int] = {}
    name_seen: dict[str, int] = {}
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) > 2:
            problems.append(f"line {line}: {len(fields)} fields, expected 2")
            continue
        if any(len(f) > MAX_FIELD_CHARS for f in fields):
            problems.append(f"line {line}: a field longer than {MAX_FIELD_CHARS} characters")
            continue
        raw_id = fields[0].strip()
        try:
            # ASCII digits only: int() also reads Arabic-Indic and full-width digits.
            if not (raw_id.isascii() and raw_id.isdigit()):
                raise InvalidInput(f"telegram_id {raw_id!r} is not a positive integer")
            telegram_id = validate_telegram_id(int(raw_id))
            username = normalize_username(fields[1] if len(fields) > 1 else None)
        except InvalidInput as exc:
            problems.append(f"line {line}: {exc}")
            continue
        if telegram_id in first_seen:
            problems.append(
                f"line {line}: telegram_id {telegram_id} repeats line {first_seen[telegram_id]}"
            )
            continue
        if username is not None and username.lower() in name_seen:
            problems.append(
                f"line {line}: username {username!r} repeats line {name_seen[username.lower()]}"
                " (usernames are unique)"
            )
            continue
        first_seen[telegram_id] = line
        if username is not None:
            name_seen[username.lower()] = line
        rows.append(UserRow(telegram_id, username))
    if problems:
        raise InvalidInput(f"{len(problems)} bad row(s); nothing was imported", problems)
    return rows
