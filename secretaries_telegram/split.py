"""Cutting a long reply into Telegram messages at paragraph or sentence boundaries."""

from __future__ import annotations

import re

TELEGRAM_LIMIT = 4096
_SENTENCE_END = re.compile(r"[.!?…](?=\s)")


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _fitting(text: str, limit: int) -> int:
    """The largest prefix length of `text` within `limit` UTF-16 units."""
    if utf16_len(text) <= limit:
        return len(text)
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _cut(window: str) -> int:
    """Where to end a part inside `window`: paragraph, line, sentence, word, else anywhere."""
    floor = len(window) // 2  # never a tiny part just to hit a boundary
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at > floor:
            return at + len(separator)
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() > floor]
    if ends:
        return ends[-1]
    at = window.rfind(" ")
    return at + 1 if at > floor else len(window)


def split_text(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Parts of at most `limit` units each; joined they are `text` (no character lost)."""
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        window = rest[: _fitting(rest, limit)]
        cut = _cut(window)
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest or not parts:
        parts.append(rest)
    return parts
