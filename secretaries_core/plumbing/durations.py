"""Durations as operators type them: `90s`, `90m`, `12h`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

from secretaries_core.errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """Parse `<positive integer><s|m|h|d|w>`; anything else is `InvalidInput`."""
    match = _DURATION_RE.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"{text!r} is not a duration: use e.g. 90s, 90m, 12h or 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])


def format_duration(value: timedelta) -> str:
    """The shortest exact `<n><unit>` form of a duration."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
