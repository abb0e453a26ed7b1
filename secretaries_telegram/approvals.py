"""Approve / Deny in the chat: the keyboard a `--confirm` tool call waits on.

The keyboard names the tool and its arguments; only the user who was asked can answer it
(another user's press is refused with an alert), and once decided its message is edited to
say what was decided. Two ways to wait, one look:
- with workers (queue mode) the turn is parked in Redis (secretaries_core/queue/
  approvals.py): the sender shows the keyboard, a press here keeps the decision and
  resumes the turn on any worker, a worker declines it when the time is up;
- without them (direct mode) the turn waits in this process, on a future a press resolves,
  for `SECRETARIES_CONFIRM_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiogram import Bot
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from secretaries_core.context.base import ContextStore
from secretaries_core.context.fences import Fenced
from secretaries_core.queue import approvals as parked
from secretaries_core.queue.client import Queue
from secretaries_core.tools.approval import APPROVED, DENIED, TIMED_OUT, Approval, Approver
from secretaries_telegram.delivery import patiently

log = logging.getLogger(__name__)
PREFIX = "ap:"  # + the approval id + ":y" or ":n" (within Telegram's 64 bytes)
NOT_YOURS = "Only the person who was asked can answer this."
GONE = "This request is no longer waiting."


def ask_text(summary: str) -> str:
    """The keyboard's message."""
    return f"Allow this action?\n{summary}"


def keyboard(approval_id: str) -> InlineKeyboardMarkup:
    """Approve / Deny for one approval."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="✅ Approve", callback_data=f"{PREFIX}{approval_id}:y"),
                InlineKeyboardButton(text="❌ Deny", callback_data=f"{PREFIX}{approval_id}:n"),
            ]
        ]
    )


def parse(data: str) -> tuple[str, bool] | None:
    """(approval id, approved?) of a press, or None for data that is not ours."""
    body = data.removeprefix(PREFIX)
    found, _, answer = body.rpartition(":")
    if not found.isalnum() or answer not in ("y", "n"):
        return None
    return found, answer == "y"


async def _settle_message(message: Any, text: str) -> None:
    """Edit the keyboard's message to what was decided (cosmetic: never fails a decision)."""
    if isinstance(message, Message):
        with contextlib.suppress(Exception):
            await patiently(lambda: message.edit_text(text, reply_markup=None))


class QueueApprovals:
    """Presses in queue mode: keep the decision, resume the parked turn."""

    def __init__(self, queue: Queue, store: ContextStore) -> None:
        self.queue = queue
        self.store = store

    async def pressed(self, query: CallbackQuery, approval_id: str, yes: bool) -> None:
        """Handle a press of Approve (yes) or Deny."""
        found = await parked.parked(self.queue, approval_id)
        if found is None:
            await query.answer(GONE)
            return
        if query.from_user.id != found.telegram_id:
            await query.answer(NOT_YOURS, show_alert=True)
            return
        try:
            decision, _ = await parked.decide(
                self.queue, self.store, found, APPROVED if yes else DENIED
            )
        except Fenced:  # erased or `/new` since: the turn will not run
            decision = DENIED
        await query.answer("Approved" if decision == APPROVED else "Declined")
        await _settle_message(query.message, parked.ended_text(decision, found.summary))


class LocalApprovals:
    """Direct mode: approvals waited for in this process."""

    def __init__(self, bot: Bot, timeout: float) -> None:
        self.bot = bot
        self.timeout = timeout
        self._waiting: dict[str, tuple[int, asyncio.Future[str]]] = {}

    def approver(self, chat_id: int, thread_id: int | None) -> Approver:
        """The approver of one message's turn in `chat_id`."""

        async def ask(approval: Approval) -> str:
            found = parked.approval_id(approval.telegram_id, approval.call_id)
            decided: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._waiting[found] = (approval.telegram_id, decided)
            summary = approval.summary()
            try:
                sent = await patiently(
                    lambda: self.bot.send_message(
                        chat_id,
                        ask_text(summary),
                        reply_markup=keyboard(found),
                        message_thread_id=thread_id,
                    )
                )
                try:
                    decision = await asyncio.wait_for(asyncio.shield(decided), self.timeout)
                except TimeoutError:
                    decision = TIMED_OUT
            finally:
                self._waiting.pop(found, None)
            await _settle_message(sent, parked.ended_text(decision, summary))
            return decision

        return ask

    async def pressed(self, query: CallbackQuery, approval_id: str, yes: bool) -> None:
        """Handle a press of Approve (yes) or Deny."""
        waiting = self._waiting.get(approval_id)
        if waiting is None:
            await query.answer(GONE)
            return
        user, decided = waiting
        if query.from_user.id != user:
            await query.answer(NOT_YOURS, show_alert=True)
            return
        if not decided.done():
            decided.set_result(APPROVED if yes else DENIED)
        await query.answer("Approved" if yes else "Declined")
