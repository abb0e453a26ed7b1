"""The aiogram router: commands, the secretary picker and streamed replies.

Handlers only translate between Telegram and the library (`Orchestrator.astream`,
`FrontDesk`); every rule (resolution, assignment, quotas, ordering) is the library's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart, Filter
from aiogram.types import BotCommand, CallbackQuery, Message, MessageReactionUpdated, User

from secretaries_core.errors import NotFound, SecretariesError
from secretaries_core.frontdesk import FrontDesk
from secretaries_core.orchestrator import Orchestrator, Reply
from secretaries_core.queue import Queue
from secretaries_core.queue import Update as QueuedUpdate
from secretaries_telegram import picker, texts
from secretaries_telegram.approvals import PREFIX as APPROVAL_PREFIX
from secretaries_telegram.approvals import LocalApprovals, QueueApprovals
from secretaries_telegram.approvals import parse as parse_press
from secretaries_telegram.delivery import Undeliverable
from secretaries_telegram.streaming import StreamedReply, draft_id_of, patiently

log = logging.getLogger(__name__)

COMMANDS = [
    BotCommand(command="start", description="Start, and choose your secretary"),
    BotCommand(command="secretary", description="Choose your secretary"),
    BotCommand(command="new", description="Forget this conversation"),
    BotCommand(command="usage", description="Your usage today and your limits"),
    BotCommand(command="help", description="What I can do"),
]


def addressed(chat_type: str, replied_to: int | None, text: str | None, me: User) -> bool:
    """Private chats always; in groups only a mention of the bot or a reply to it (the
    id of the author of the message replied to)."""
    if chat_type == "private":
        return True
    if replied_to is not None and replied_to == me.id:
        return True
    mention = f"@{me.username}".lower() if me.username else None
    return bool(mention and text and mention in text.lower())


def is_addressed(message: Message, me: User) -> bool:
    """`addressed` for an aiogram message."""
    replied = message.reply_to_message
    author = replied.from_user.id if replied is not None and replied.from_user else None
    return addressed(message.chat.type, author, message.text, me)


class Addressed(Filter):
    """Private chats always; in groups only a mention of the bot or a reply to it."""

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, Any]:
        return is_addressed(message, await bot.me())


async def enqueue_text(queue: Queue, message: Message, update_id: int, me: User) -> bool:
    """Queue a text message for the workers, as long polling does; False when that
    update id of that user was queued before."""
    assert message.from_user is not None and message.text is not None
    return await queue.aenqueue(
        queued_text(
            update_id,
            message.from_user.id,
            message.from_user.username,
            message.chat.id,
            message.message_thread_id,
            message.text,
            me,
        )
    )


def queued_text(
    update_id: int,
    user_id: int,
    username: str | None,
    chat_id: int,
    thread_id: int | None,
    text: str,
    me: User,
) -> QueuedUpdate:
    """The queue entry of a text message (the bot's mention taken out of the text)."""
    return QueuedUpdate(
        update_id, user_id, _without_mention(text, me.username), username, chat_id, thread_id
    )


def _without_mention(text: str, username: str | None) -> str:
    if not username:
        return text
    mention = f"@{username}"
    at = text.lower().find(mention.lower())
    if at < 0:
        return text
    return (text[:at] + text[at + len(mention) :]).strip() or text


LIKE, DISLIKE = "\U0001f44d", "\U0001f44e"
REACTION_ATTEMPTS = 6
# The longest a reaction waits for the replies still being answered in its chat.
ANSWERING_WAIT_S = 60.0


def _vote(reactions: list[Any] | None) -> int | None:
    """1 for a 👍 among the reactions, -1 for a 👎, None for neither."""
    emojis = {getattr(r, "emoji", None) for r in reactions or []}
    if LIKE in emojis:
        return 1
    if DISLIKE in emojis:
        return -1
    return None


async def _typing(bot: Bot, chat: int) -> None:
    try:
        await bot.send_chat_action(chat, "typing")
    except Exception as exc:  # cosmetic: the reply comes from the sender
        log.debug("typing action failed: %s", exc)


def create_router(
    orchestrator: Orchestrator,
    *,
    edit_interval: float = 1.0,
    queue: Queue | None = None,
    drafts: bool = True,
    approvals: QueueApprovals | LocalApprovals | None = None,
) -> Router:
    """Handlers for /start, /secretary, /new, /usage, /help, the picker and text messages.

    With a `queue`, text messages are only enqueued (the workers answer them; the drafter
    shows their pieces, `relay` sends what arrives on the replies stream); commands are
    always handled here. `drafts`: private chats stream as drafts (else by edits).
    """
    router = Router(name="secretaries")
    desk = FrontDesk(orchestrator)
    # aiogram handles the updates of one poll as concurrent tasks, and the queue's client
    # sends over a pool of connections: two messages of one user could reach Redis in
    # either order. One lock per user, taken first thing (tasks start in update order,
    # and asyncio's locks are first come, first served), keeps their order in the stream.
    enqueue_order: dict[int, tuple[asyncio.Lock, list[int]]] = {}
    cosmetic: set[asyncio.Future[None]] = set()  # "typing…" actions under way
    # Direct mode: the messages being answered in each chat, done once their reply's
    # version is kept (or the answer failed), for reactions that come first.
    answering: dict[int, set[asyncio.Future[None]]] = {}

    def _dropped(chat_id: int, exc: Undeliverable) -> None:
        orchestrator.metrics.telegram_dropped.labels(reason=exc.reason).inc()
        log.info("chat %s: reply dropped: %s", chat_id, exc)

    async def say_error(message: Message, exc: SecretariesError) -> None:
        log.warning("chat %s: %s: %s", message.chat.id, type(exc).__name__, exc)
        await patiently(lambda: message.answer(texts.for_people(exc)))

    async def show_picker(message: Message, user_id: int, username: str | None) -> None:
        found = await desk.choices(user_id, username=username)
        board = picker.keyboard(
            found.secretaries, found.current, picker.page_of(found.secretaries, found.current)
        )
        await patiently(lambda: message.answer(texts.PICK, reply_markup=board))

    @router.message(CommandStart(), Addressed())
    async def start(message: Message) -> None:
        user = message.from_user
        if user is None:
            return
        await patiently(lambda: message.answer(texts.GREETING))
        try:
            found = await desk.choices(user.id, username=user.username)
            if found.source != "assigned":
                await show_picker(message, user.id, user.username)
            else:
                name = next(
                    (s.name for s in found.secretaries if s.id == found.current), "your secretary"
                )
                await patiently(lambda: message.answer(texts.SWITCHED.format(name=name)))
        except SecretariesError as exc:
            await say_error(message, exc)

    @router.message(Command("secretary"), Addressed())
    async def choose(message: Message) -> None:
        if message.from_user is None:
            return
        try:
            await show_picker(message, message.from_user.id, message.from_user.username)
        except SecretariesError as exc:
            await say_error(message, exc)

    @router.message(Command("new"), Addressed())
    async def new(message: Message) -> None:
        if message.from_user is None:
            return
        try:
            name, found = await desk.forget(message.from_user.id)
        except SecretariesError as exc:
            await say_error(message, exc)
            return
        line = texts.FORGOTTEN.format(name=name) if found else texts.NOTHING_TO_FORGET
        await patiently(lambda: message.answer(line))

    @router.message(Command("usage"), Addressed())
    async def usage(message: Message) -> None:
        if message.from_user is None:
            return
        try:
            today = await desk.today(message.from_user.id)
        except SecretariesError as exc:
            await say_error(message, exc)
            return
        limits = today.limits

        def of(used: int, limit: int | None, unit: str) -> str:
            return f"{used} {unit}" + (f" of {limit}" if limit is not None else " (no limit)")

        line = (
            f"Today: {of(today.messages, limits.messages_per_day, 'messages')}, "
            f"{of(today.tokens, limits.tokens_per_day, 'tokens')}. "
            f"Limits reset at {today.resets_at:%H:%M} UTC."
        )
        await patiently(lambda: message.answer(line))

    @router.message(Command("help"), Addressed())
    async def help_(message: Message) -> None:
        await patiently(lambda: message.answer(texts.HELP))

    @router.callback_query(F.data.startswith(picker.PAGE_PREFIX))
    async def turn_page(query: CallbackQuery) -> None:
        raw = (query.data or "").removeprefix(picker.PAGE_PREFIX)
        if not (raw.isascii() and raw.isdigit()):
            await query.answer()  # not one of our buttons (forged or from an old build)
            return
        page = int(raw)
        try:
            found = await desk.choices(query.from_user.id)
        except SecretariesError as exc:
            await query.answer(texts.for_people(exc))
            return
        await query.answer()
        if query.message is not None and isinstance(query.message, Message):
            board = picker.keyboard(found.secretaries, found.current, page)
            await patiently(lambda: query.message.edit_reply_markup(reply_markup=board))  # type: ignore[union-attr]

    @router.callback_query(F.data.startswith(picker.PICK_PREFIX))
    async def pick(query: CallbackQuery) -> None:
        raw = (query.data or "").removeprefix(picker.PICK_PREFIX)
        try:
            secretary_id = uuid.UUID(raw)
            done = await desk.switch(query.from_user.id, secretary_id)
        except ValueError:
            await query.answer()
            return
        except SecretariesError as exc:
            log.info("switch refused for %s: %s", query.from_user.id, exc)
            await query.answer(texts.for_people(exc), show_alert=False)
            done = None
        if done is not None:
            await query.answer(texts.SWITCHED.format(name=done.secretary))
        found = await desk.choices(query.from_user.id)
        if query.message is not None and isinstance(query.message, Message):
            board = picker.keyboard(
                found.secretaries, found.current, picker.page_of(found.secretaries, found.current)
            )
            edited = query.message
            try:
                await patiently(lambda: edited.edit_reply_markup(reply_markup=board))
            except Exception as exc:  # an unchanged keyboard is "not modified": harmless
                log.debug("picker not edited: %s", exc)
        if done is not None and query.message is not None:
            chat_id = query.message.chat.id
            line = texts.SWITCHED.format(name=done.secretary)
            await patiently(lambda: query.bot.send_message(chat_id, line))  # type: ignore[union-attr]

    @router.callback_query(F.data.startswith(APPROVAL_PREFIX))
    async def approve(query: CallbackQuery) -> None:
        found = parse_press(query.data or "")
        if found is None or approvals is None:
            await query.answer()  # not one of our buttons
            return
        try:
            await approvals.pressed(query, *found)
        except SecretariesError as exc:
            log.warning("approval press not taken: %s", exc)
            await query.answer(texts.for_people(exc))

    @router.callback_query()
    async def noop(query: CallbackQuery) -> None:
        # "noop" (the page counter) and any data no handler knows: answered, so the
        # button stops spinning, and otherwise ignored.
        await query.answer()

    @router.message(F.text, Addressed())
    async def text(message: Message, bot: Bot, **data: Any) -> None:
        user = message.from_user
        if user is None or message.text is None:
            return
        if queue is not None:
            lock, users = enqueue_order.setdefault(user.id, (asyncio.Lock(), [0]))
            users[0] += 1  # forgotten when the last task of this user is done with it
            try:
                async with lock:
                    update = data.get("event_update")
                    update_id = update.update_id if update is not None else message.message_id
                    await enqueue_text(queue, message, update_id, await bot.me())
            except SecretariesError as exc:
                await say_error(message, exc)
                return
            finally:
                users[0] -= 1
                if not users[0]:
                    del enqueue_order[user.id]
            # Not awaited: a webhook answers Telegram as soon as the update is queued.
            typing = asyncio.ensure_future(_typing(bot, message.chat.id))
            cosmetic.add(typing)
            typing.add_done_callback(cosmetic.discard)
            return
        me = await bot.me()
        content = _without_mention(message.text, me.username)
        reply = StreamedReply(
            bot,
            message.chat.id,
            reply_to=message.message_id if message.chat.type != "private" else None,
            interval=edit_interval,
            thread_id=message.message_thread_id,
            draft_id=draft_id_of(message.message_id) if drafts else None,
        )
        stream = orchestrator.astream(user.id, content, username=user.username)
        stream.on_tool = reply.tool_event  # the running tool's name shows in the chat
        if isinstance(approvals, LocalApprovals):
            stream.approver = approvals.approver(message.chat.id, message.message_thread_id)
        answered = asyncio.get_running_loop().create_future()
        answering.setdefault(message.chat.id, set()).add(answered)
        try:
            await reply.stream(stream)
            if stream.reply is not None and reply.message_id is not None:
                await _remember(user.id, reply.message_id, stream.reply)
        except SecretariesError as exc:
            log.warning("chat %s: %s: %s", message.chat.id, type(exc).__name__, exc)
            try:
                await reply.fail(texts.for_people(exc))
            except Undeliverable as dropped:
                _dropped(message.chat.id, dropped)
        except Undeliverable as exc:
            # The user blocked the bot (or the chat is gone): nothing to show, nothing
            # stored (the stream is closed unfinished), counted.
            _dropped(message.chat.id, exc)
        finally:
            pending = answering.get(message.chat.id, set())
            pending.discard(answered)
            if not pending:
                answering.pop(message.chat.id, None)
            answered.set_result(None)
            await stream.aclose()

    async def _remember(user_id: int, message_id: int, answer: Reply) -> None:
        # Which version wrote this message, so a reaction to it counts for that version.
        try:
            await orchestrator.hops.run(
                orchestrator.admin.remember_reply,
                user_id,
                message_id,
                answer.secretary_id,
                answer.version,
            )
        except Exception as exc:  # feedback is a nicety; the reply is out
            log.warning("reply %s not remembered for feedback: %s", message_id, exc)

    @router.message_reaction()
    async def reaction(update: MessageReactionUpdated) -> None:
        """👍 / 👎 on one of our replies counts for the version that wrote it."""
        user = update.user
        if user is None:
            return
        value = _vote(update.new_reaction)
        if value is None or value == _vote(update.old_reaction):
            return
        for attempt in range(REACTION_ATTEMPTS):
            try:
                await orchestrator.feedback(user.id, value, message_id=update.message_id)
                return
            except NotFound as exc:
                # The reply is out but which version wrote it is written just after it
                # was sent (after the turn is stored): a quick reaction may come first.
                # Replies still being answered in this chat are waited for — however long
                # a loaded machine takes to store them —, else a moment.
                if attempt + 1 == REACTION_ATTEMPTS:
                    log.info("reaction to %s not counted: %s", update.message_id, exc)
                    return
                pending = answering.get(update.chat.id)
                if pending:
                    await asyncio.wait(set(pending), timeout=ANSWERING_WAIT_S)
                else:
                    await asyncio.sleep(0.5)
            except SecretariesError as exc:
                log.info("reaction to %s not counted: %s", update.message_id, exc)
                return

    @router.message(Addressed(), F.chat.type == "private")
    async def other(message: Message) -> None:
        await patiently(lambda: message.answer(texts.NOT_TEXT))

    return router
