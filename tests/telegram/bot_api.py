"""A Bot API server double on loopback: scripted updates in, every bot call recorded.

Real HTTP (aiohttp) with Telegram's envelope (`{"ok": true, "result": …}`), so aiogram's
real `Bot` and `Dispatcher` talk to it as to api.telegram.org. It enforces what Telegram
enforces and a bot gets wrong: 4,096-character texts, no empty text, "message is not
modified" on an identical edit, entity parsing when a parse mode is sent, and it can
answer any method with 429 `retry_after` on demand, 403 for chats that blocked the bot,
and 500 for every send during an outage. With `limits` on it enforces Telegram's flood
limits as sliding windows — 30 sends a second per bot, 1 a second per chat, 20 a minute
per group, edits and drafts included — and answers 429 with `retry_after` past them.
It takes `sendMessageDraft` in private chats (unless `drafts` is off: an older server).
Once a bot calls `setWebhook`, updates are pushed to that URL with the secret header, as
Telegram does (a non-200 is retried), and `getUpdates` answers 409 until `deleteWebhook`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456789:TEST-token-for-the-double"
BOT = {"id": 999, "is_bot": True, "first_name": "Secretaries", "username": "sec_bot"}


@dataclass
class BotApi:
    """State of the double: updates to hand out, calls seen, faults to inject."""

    updates: list[dict[str, Any]] = field(default_factory=list)
    # every update ever pushed (`updates` loses them as the bot confirms them)
    history: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    # method -> retry_after seconds for its next calls (one entry per refused call)
    flood: dict[str, list[int]] = field(default_factory=dict)
    # chats whose sends are refused with 403 "bot was blocked by the user"
    blocked: set[int] = field(default_factory=set)
    # every send method answers 500 until this time.monotonic() (a Bot API outage)
    down_until: float = 0.0
    texts: dict[tuple[int, int], str] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    # Telegram's flood limits (see the module docstring) and the 429s they caused.
    limits: bool = False
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    _windows: dict[Any, list[float]] = field(default_factory=dict)
    drafts: bool = True
    # chat -> the texts of its drafts, in order, and when each came
    draft_texts: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    deleted: list[tuple[int, int]] = field(default_factory=list)
    sent_at: dict[tuple[int, int], float] = field(default_factory=dict)
    _next_update: int = 1
    _next_message: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _arrived: asyncio.Event | None = None
    # When the double's own loop last ran, and when its stalls (gaps past STALL_S) ended:
    # requests that waited out a stall are stamped together, so the windows they fall in
    # measure the double, not the bot. Those are let through and counted in `unmeasured`.
    _last_tick: float = 0.0
    _stall_ends: list[float] = field(default_factory=list)
    unmeasured: int = 0
    # setWebhook's parameters while a webhook is set; (update id, URL, HTTP status) of each push
    webhook: dict[str, str] | None = None
    pushes: list[tuple[int, str, int]] = field(default_factory=list)

    # -- what tests do -----------------------------------------------------------------

    def _push(self, update: dict[str, Any]) -> None:
        with self._lock:
            update["update_id"] = self._next_update
            self._next_update += 1
            self.history.append(update)
            hook = dict(self.webhook) if self.webhook else None
            if hook is None:
                self.updates.append(update)
        if hook is not None and self._loop is not None:
            asyncio.run_coroutine_threadsafe(_push_to(self, hook["url"], hook, update), self._loop)
            return
        if self._loop is not None and self._arrived is not None:
            self._loop.call_soon_threadsafe(self._arrived.set)

    def push_again(self, update_id: int, url: str | None = None) -> None:
        """Deliver update `update_id` once more (to `url`: another replica), as Telegram
        does when it got no 200 in time."""
        with self._lock:
            update = next(u for u in self.history if u["update_id"] == update_id)
            hook = dict(self.webhook or {})
        assert self._loop is not None and hook
        asyncio.run_coroutine_threadsafe(
            _push_to(self, url or hook["url"], hook, update), self._loop
        ).result(30)

    def send(
        self, user: int, text: str, *, chat: dict[str, Any] | None = None, thread: int | None = None
    ) -> None:
        """The user `user` writes `text` (in a private chat unless `chat` says otherwise)."""
        message: dict[str, Any] = {
            "message_id": self._new_message_id(),
            "date": int(time.time()),
            "chat": chat or {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": f"U{user}", "username": f"u{user}"},
            "text": text,
        }
        if thread is not None:
            message["message_thread_id"] = thread
            message["is_topic_message"] = True
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        self._push({"message": message})

    def press(self, user: int, message: dict[str, Any], data: str) -> None:
        """The user presses the inline button with `data` under `message`."""
        self._push(
            {
                "callback_query": {
                    "id": f"cb{self._next_update}",
                    "from": {"id": user, "is_bot": False, "first_name": f"U{user}"},
                    "chat_instance": "ci",
                    "message": message,
                    "data": data,
                }
            }
        )

    def react(self, user: int, chat: int, message_id: int, emoji: str) -> None:
        """The user puts `emoji` on message `message_id` (a `message_reaction` update)."""
        self._push(
            {
                "message_reaction": {
                    "chat": {"id": chat, "type": "private"},
                    "message_id": message_id,
                    "user": {"id": user, "is_bot": False, "first_name": f"U{user}"},
                    "date": int(time.time()),
                    "old_reaction": [],
                    "new_reaction": [{"type": "emoji", "emoji": emoji}],
                }
            }
        )

    def seen(self, method: str, chat: int | None = None) -> list[dict[str, Any]]:
        """The calls of `method` so far (for one chat)."""
        with self._lock:
            return [
                p
                for m, p, _ in self.calls
                if m == method and (chat is None or str(p.get("chat_id")) == str(chat))
            ]

    def wait(self, check: Callable[[], Any], timeout: float = 90.0) -> Any:
        """Poll `check()` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting; calls so far: {[c[0] for c in self.calls]}")

    def _new_message_id(self) -> int:
        with self._lock:
            self._next_message += 1
            return self._next_message

    # -- what the bot sees ---------------------------------------------------------------

    def _message(self, chat_id: int, text: str, markup: str | None = None) -> dict[str, Any]:
        message_id = self._new_message_id()
        self.texts[(chat_id, message_id)] = text
        out: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT,
            "text": text,
        }
        if markup:
            import json

            out["reply_markup"] = json.loads(markup)
        with self._lock:
            self.sent.append(out)
            self.sent_at[(chat_id, message_id)] = time.monotonic()
        return out

    def _over_limit(self, chat: int, now: float) -> tuple[int, str] | None:
        """Take a slot in every window of `chat` at `now` (when the request arrived), or
        (seconds to wait, which limit)."""
        windows = [(("bot",), 30, 1.0), (("chat", chat), 1, 1.0)]
        if chat < 0:
            windows.append((("group", chat), 20, 60.0))
        with self._lock:
            stalled = now - self._last_tick > STALL_S or any(
                now - 1.0 < end <= now + STALL_S for end in self._stall_ends[-20:]
            )
            for key, limit, span in windows:
                if stalled and span <= 1.0:
                    continue

                times = [t for t in self._windows.get(key, []) if t > now - span]
                self._windows[key] = times
                if len(times) >= limit:
                    wait = max(1, int(times[len(times) - limit] + span - now + 0.999))
                    gap = now - times[-1]
                    return wait, f"{key[0]} (last {gap:.3f}s ago)"
            if stalled:
                self.unmeasured += 1
            for key, _limit, _span in windows:
                # A window skipped above (a stall of the double) may not exist yet.
                self._windows.setdefault(key, []).append(now)
        return None

    def measured(self, at: float) -> bool:
        """False for a call stamped within a second after a stall of the double (see
        `unmeasured`): its time says when the double woke up, not when it came."""
        with self._lock:
            return not any(end - STALL_S <= at < end + 1.0 for end in self._stall_ends)

    def drafts_to(self, chat: int) -> list[str]:
        """The texts of the drafts shown in `chat`, oldest first."""
        with self._lock:
            return [text for text, _ in self.draft_texts.get(chat, [])]

    def messages_to(self, chat: int) -> list[dict[str, Any]]:
        """Messages the bot sent to `chat`, oldest first, with their text as edited since."""
        with self._lock:
            found = [dict(m) for m in self.sent if m["chat"]["id"] == chat]
        for m in found:
            m["text"] = self.texts.get((chat, m["message_id"]), m["text"])
        return found


# A gap this long between the double's ticks is a stall of the double itself.
STALL_S = 0.15

LIMITED = {
    "sendMessage",
    "sendMessageDraft",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
}


def _bad(status: int, description: str, **extra: Any) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description, **extra}, status=status
    )


def _text_problem(text: str | None, params: dict[str, Any]) -> str | None:
    if not text:
        return "Bad Request: message text is empty"
    if len(text.encode("utf-16-le")) // 2 > 4096:
        return "Bad Request: message is too long"
    if params.get("parse_mode"):
        return "Bad Request: can't parse entities: the double refuses every parse mode"
    return None


PUSH_TRIES = 20


async def _push_to(api: BotApi, url: str, hook: dict[str, str], update: dict[str, Any]) -> None:
    """POST `update` to the webhook like Telegram: the secret header, retried until a 200."""
    import aiohttp

    headers = {"X-Telegram-Bot-Api-Secret-Token": hook.get("secret_token", "")}
    async with aiohttp.ClientSession() as session:
        for attempt in range(PUSH_TRIES):
            status = 0
            try:
                async with session.post(url, json=update, headers=headers) as response:
                    status = response.status
            except aiohttp.ClientError:
                pass
            with api._lock:
                api.pushes.append((update["update_id"], url, status))
            if status == 200:
                return
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))


def make_app(api: BotApi) -> web.Application:
    """The aiohttp application serving `/bot<token>/<method>`."""

    async def handle(request: web.Request) -> web.Response:
        # Stamped before the body is read: under load, reading it waits its turn on this
        # thread's loop, and a later stamp would bunch requests that came evenly spaced.
        arrived = time.monotonic()
        token, method = request.match_info["token"], request.match_info["method"]
        params: dict[str, Any] = dict(await request.post()) if request.can_read_body else {}
        params = {k: v for k, v in params.items() if isinstance(v, str)}
        if token != TOKEN:
            return _bad(401, "Unauthorized")
        with api._lock:
            api.calls.append((method, params, time.monotonic()))
            refused = api.flood.get(method)
            wait = refused.pop(0) if refused else None
        if wait is not None:
            return _bad(
                429, f"Too Many Requests: retry after {wait}", parameters={"retry_after": wait}
            )
        if api.limits and method in LIMITED:
            over = api._over_limit(int(params.get("chat_id") or 0), arrived)
            if over is not None:
                wait, which = over
                with api._lock:
                    api.refused.append((method, int(params.get("chat_id") or 0), which))
                return _bad(
                    429, f"Too Many Requests: retry after {wait}", parameters={"retry_after": wait}
                )
        if method in ("setWebhook", "deleteWebhook", "getWebhookInfo"):
            with api._lock:
                if method == "setWebhook":
                    api.webhook = params
                elif method == "deleteWebhook":
                    api.webhook = None
                info = {
                    "url": (api.webhook or {}).get("url", ""),
                    "has_custom_certificate": False,
                    "pending_update_count": 0,
                }
            result: Any = info if method == "getWebhookInfo" else True
            return web.json_response({"ok": True, "result": result})
        if method == "getUpdates" and api.webhook is not None:
            return _bad(409, "Conflict: can't use getUpdates method while webhook is active")
        if method not in ("getMe", "getUpdates", "setMyCommands", "deleteWebhook"):
            if time.monotonic() < api.down_until:
                return _bad(500, "Internal Server Error")
            if str(params.get("chat_id")) in {str(c) for c in api.blocked}:
                return _bad(403, "Forbidden: bot was blocked by the user")
        return await _answer(api, method, params)

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    return app


async def _answer(api: BotApi, method: str, params: dict[str, Any]) -> web.Response:
    def ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    if method == "getMe":
        return ok(BOT)
    if method in ("setMyCommands", "deleteWebhook", "answerCallbackQuery", "sendChatAction"):
        return ok(True)
    if method == "getUpdates":
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 2.0)
        assert api._arrived is not None
        deadline = time.monotonic() + timeout
        while True:
            with api._lock:
                ready = [u for u in api.updates if u["update_id"] >= offset]
            if ready or time.monotonic() >= deadline:
                return ok(ready)
            api._arrived.clear()
            # Long polling: wake up when an update is pushed, else at the deadline.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(api._arrived.wait(), deadline - time.monotonic())
    chat_id = int(params.get("chat_id") or 0)
    if method == "sendMessage":
        problem = _text_problem(params.get("text"), params)
        if problem:
            return _bad(400, problem)
        return ok(api._message(chat_id, params["text"], params.get("reply_markup")))
    if method == "sendMessageDraft":
        if not api.drafts:
            return _bad(404, "Not Found: method not found")
        if chat_id <= 0:
            return _bad(400, "Bad Request: drafts are for private chats only")
        if int(params.get("draft_id") or 0) == 0:
            return _bad(400, "Bad Request: draft_id must be non-zero")
        text = params.get("text") or ""
        if len(text) > 4096 or params.get("parse_mode"):
            return _bad(400, "Bad Request: bad draft text")
        with api._lock:
            api.draft_texts.setdefault(chat_id, []).append((text, time.monotonic()))
        return ok(True)
    if method == "deleteMessage":
        with api._lock:
            api.deleted.append((chat_id, int(params["message_id"])))
            api.sent = [
                m
                for m in api.sent
                if (m["chat"]["id"], m["message_id"]) != (chat_id, int(params["message_id"]))
            ]
        return ok(True)
    if method == "editMessageText":
        problem = _text_problem(params.get("text"), params)
        if problem:
            return _bad(400, problem)
        key = (chat_id, int(params["message_id"]))
        if api.texts.get(key) == params["text"]:
            return _bad(400, "Bad Request: message is not modified")
        api.texts[key] = params["text"]
        message = {"message_id": key[1], "date": 0, "chat": {"id": chat_id, "type": "private"}}
        return ok({**message, "from": BOT, "text": params["text"]})
    if method == "editMessageReplyMarkup":
        message = {
            "message_id": int(params["message_id"]),
            "date": 0,
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT,
            "text": "x",
        }
        return ok(message)
    return _bad(404, f"Not Found: method {method}")


@contextmanager
def bot_api() -> Iterator[tuple[str, BotApi]]:
    """Serve the double on a free loopback port in a thread; yield (base URL, state)."""
    api = BotApi()
    loop = asyncio.new_event_loop()
    state: dict[str, Any] = {}

    async def tick() -> None:
        while True:
            now = time.monotonic()
            with api._lock:
                if api._last_tick and now - api._last_tick > STALL_S:
                    api._stall_ends.append(now)
                api._last_tick = now
            await asyncio.sleep(0.02)

    async def start() -> None:
        api._loop, api._arrived = loop, asyncio.Event()
        api._last_tick = time.monotonic()
        state["tick"] = loop.create_task(tick())
        runner = web.AppRunner(make_app(api), access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"], state["port"] = runner, runner.addresses[0][1]

    thread = threading.Thread(target=loop.run_forever, daemon=True, name="bot-api")
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{state['port']}", api
    finally:
        loop.call_soon_threadsafe(state["tick"].cancel)
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
