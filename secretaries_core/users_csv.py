"""Validation of a `telegram_id,username` CSV file, whole, before anything is written."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass

from secretaries_core.errors import InvalidInput
from secretaries_core.refs import normalize_username, validate_telegram_id

HEADER = ("telegram_id", "username")


@dataclass(frozen=True)
class UserRow:
    """One valid row of the file."""

    telegram_id: int
    username: str | None


def parse_users_csv(lines: Iterable[str]) -> list[UserRow]:
    """Parse every row; if any is bad raise `InvalidInput` listing each bad line number."""
    reader = csv.reader(lines)
    problems: list[str] = []
    header = next(reader, None)
    if header is None or tuple(h.strip().lower() for h in header[:2]) != HEADER or len(header) > 2:
        raise InvalidInput(
            "the file must start with the header `telegram_id,username`",
            ["line 1: expected header telegram_id,username"],
        )
    rows: list[UserRow] = []
    first_seen: dict[int, int] = {}
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) > 2:
            problems.append(f"line {line}: {len(fields)} fields, expected 2")
            continue
        raw_id = fields[0].strip()
        try:
            if not raw_id.isdigit():
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
        first_seen[telegram_id] = line
        rows.append(UserRow(telegram_id, username))
    if problems:
        raise InvalidInput(f"{len(problems)} bad row(s); nothing was imported", problems)
    return rows
