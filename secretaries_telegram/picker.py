"""The inline keyboard of secretaries: the current one marked, 8 a page, ids in callbacks."""

from __future__ import annotations

import uuid

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from secretaries_core.catalog.schemas import SecretaryOut

PAGE_SIZE = 8
PICK_PREFIX = "sec:"  # + the secretary's UUID: survives renames, 40 of Telegram's 64 bytes
PAGE_PREFIX = "page:"
MAX_LABEL = 60
PREVIOUS, NEXT = "\u2039", "\u203a"  # single angle quotation marks


def label(secretary: SecretaryOut, current: bool) -> str:
    """`✓ name — description`, cut to what a button shows well."""
    text = secretary.name
    if secretary.description:
        text += f" — {' '.join(secretary.description.split())}"
    if len(text) > MAX_LABEL:
        text = text[: MAX_LABEL - 1] + "…"
    return f"✓ {text}" if current else text


def keyboard(
    secretaries: list[SecretaryOut], current: uuid.UUID, page: int = 0
) -> InlineKeyboardMarkup:
    """One button per secretary on `page`, then previous/next buttons when there are more pages."""
    pages = max(1, -(-len(secretaries) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    shown = secretaries[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    rows = [
        [InlineKeyboardButton(text=label(s, s.id == current), callback_data=f"{PICK_PREFIX}{s.id}")]
        for s in shown
    ]
    if pages > 1:
        nav = []
        if page > 0:
            nav.append(
                InlineKeyboardButton(text=PREVIOUS, callback_data=f"{PAGE_PREFIX}{page - 1}")
            )
        nav.append(InlineKeyboardButton(text=f"{page + 1}/{pages}", callback_data="noop"))
        if page < pages - 1:
            nav.append(InlineKeyboardButton(text=NEXT, callback_data=f"{PAGE_PREFIX}{page + 1}"))
        rows.append(nav)
    return InlineKeyboardMarkup(inline_keyboard=rows)


def page_of(secretaries: list[SecretaryOut], current: uuid.UUID) -> int:
    """The page that shows the current secretary."""
    for i, s in enumerate(secretaries):
        if s.id == current:
            return i // PAGE_SIZE
    return 0
