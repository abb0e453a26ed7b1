"""The real `secretaries bot` process against the Bot API double and the model double.

aiogram's real `Bot` and `Dispatcher` run inside the bot process; the only doubles are the
two servers on loopback (Telegram's Bot API and an OpenAI-compatible model).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import SqlContextStore
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import Script, llm_server
from tests.telegram.bot_api import TOKEN, BotApi, bot_api


@dataclass
class Rig:
    """A running bot process, its database and both doubles."""

    api: BotApi
    script: Script
    registry: SecretaryRegistry
    store: SqlContextStore
    proc: subprocess.Popen[str]
    log: Path

    def turns(self, user: int, name: str) -> list[tuple[str, str]]:
        sid = self.registry.get_secretary(name).id
        return [(m.role, m.content) for m in self.store.read(user, sid)]

    def stderr(self) -> str:
        """Stop the bot (SIGTERM) and return all it logged."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        return self.log.read_text()


def _env(db_url: str, api_url: str, llm_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(
        SECRETARIES_HOME=str(home),
        SECRETARIES_DATABASE_URL=db_url,
        SECRETARIES_OPENAI_BASE_URL=llm_url,
        SECRETARIES_MODEL_RETRIES="0",
        SECRETARIES_MODEL_TIMEOUT="30",
        SECRETARIES_RESOLUTION_TTL="0",
        SECRETARIES_TELEGRAM_TOKEN=TOKEN,
        SECRETARIES_TELEGRAM_API_URL=api_url,
        SECRETARIES_MAX_MESSAGE_CHARS="20000",
    )
    return env


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    for name, default, description in (("alice", True, "Cheerful"), ("bob", False, "Terse")):
        registry.create_secretary(
            AssistantCreate(
                name=name,
                model="openai/m",
                prompt=f"You are {name}.",
                description=description,
                is_default=default,
            )
        )
    store = SqlContextStore(engine, Settings.load(env={}).context_policy)
    # The bot's log goes to a file: a pipe nobody reads would block a chatty bot, and a
    # failing test prints the log's end (pytest shows it with the failure).
    log = tmp_path / "bot.log"
    with (
        bot_api() as (api_url, api),
        llm_server(Script(chunk_delay=0.01)) as (llm_url, script),
        log.open("w") as log_file,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "bot", "--edit-interval", "0.3"],
            env=_env(db_url, api_url, llm_url, tmp_path / "home"),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )
        try:
            api.wait(lambda: api.seen("setMyCommands") or proc.poll() is not None)
            assert proc.poll() is None, log.read_text()[-4000:]
            yield Rig(api, script, registry, store, proc, log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            print("bot log (last 60 lines):\n" + "\n".join(log.read_text().splitlines()[-60:]))
    engine.dispose()


def _picker(api: BotApi, chat: int, after: int = 0) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        boards = [m for m in api.messages_to(chat)[after:] if "reply_markup" in m]
        return boards[-1] if boards else None

    board: dict[str, Any] = api.wait(found)
    return board


def _buttons(board: dict[str, Any]) -> dict[str, str]:
    rows = board["reply_markup"]["inline_keyboard"]
    return {b["text"]: b["callback_data"] for row in rows for b in row}


def _reply_to(rig: Rig, chat: int, user_text: str, name: str) -> str:
    """Wait until the turn is stored and the chat shows exactly the stored answer."""
    return _reply_to_in(rig, chat, chat, user_text, name)


def _reply_to_in(rig: Rig, chat: int, user: int, user_text: str, name: str) -> str:
    """`_reply_to` for a user writing in another chat (a group)."""

    def stored() -> str | None:
        turns = rig.turns(user, name)
        for (role, content), nxt in itertools.pairwise(turns):
            if role == "user" and content == user_text and nxt[0] == "assistant":
                return nxt[1]
        return None

    answer: str = rig.api.wait(stored)

    def shown() -> bool:
        texts = [m["text"] for m in rig.api.messages_to(chat)]
        # The answer is the last message, or (split) the last few ones joined.
        return any("".join(texts[i:]) == answer for i in range(len(texts)))

    rig.api.wait(shown)
    return answer


def test_a_user_picks_switches_talks_and_starts_over(rig: Rig) -> None:
    api = rig.api
    commands = {
        c
        for p in api.seen("setMyCommands")
        for c in ("start", "secretary", "new", "usage", "help")
        if f'"{c}"' in p["commands"]
    }
    assert commands == {"start", "secretary", "new", "usage", "help"}

    api.send(42, "/start")
    board = _picker(api, 42)
    buttons = _buttons(board)
    assert "\u2713 alice \u2014 Cheerful" in buttons and "bob \u2014 Terse" in buttons
    bob_id = rig.registry.get_secretary("bob").id
    assert buttons["bob \u2014 Terse"] == f"sec:{bob_id}"

    # Renaming bob does not break the button: callbacks carry ids.
    from secretaries_core.catalog.models import AssistantUpdate

    rig.registry.update_secretary("bob", AssistantUpdate(name="robert"))
    api.press(42, board, buttons["bob \u2014 Terse"])
    api.wait(lambda: api.seen("answerCallbackQuery"))
    edited = api.wait(lambda: api.seen("editMessageReplyMarkup", 42))
    rows = json.loads(edited[-1]["reply_markup"])["inline_keyboard"]
    assert "\u2713 robert \u2014 Terse" in [b["text"] for row in rows for b in row]
    assert rig.registry.current(42)[0].source == "assigned"

    api.send(42, "hello there")
    answer = _reply_to(rig, 42, "hello there", "robert")
    assert answer == "<You are bob.> re: hello there (0 earlier)"

    api.send(42, "/secretary")
    board = _picker(api, 42, after=len(api.messages_to(42)) - 1)
    buttons = _buttons(board)
    assert "\u2713 robert \u2014 Terse" in buttons
    api.press(42, board, buttons["alice \u2014 Cheerful"])
    api.wait(lambda: rig.registry.current(42)[1].name == "alice")
    api.send(42, "and you?")
    # alice has her own context: nothing of the conversation with bob.
    assert _reply_to(rig, 42, "and you?", "alice").endswith("(0 earlier)")

    api.send(42, "/new")
    api.wait(lambda: any("forgotten" in m["text"] for m in api.messages_to(42)))
    assert rig.turns(42, "alice") == []
    assert len(rig.turns(42, "robert")) == 2

    api.send(42, "/usage")
    line = api.wait(lambda: [m for m in api.messages_to(42) if m["text"].startswith("Today:")])
    assert "2 messages (no limit)" in line[0]["text"]
    api.send(42, "/help")
    api.wait(lambda: [m for m in api.messages_to(42) if "/secretary" in m["text"]])
    assert "Traceback" not in rig.stderr()


def test_long_replies_flood_control_and_markup_characters(rig: Rig) -> None:
    api = rig.api
    # 10,000 characters of prose with sentences and paragraphs: the echo makes it the reply.
    paragraph = "This is a sentence about *bold* _things_ and [links](x) <b>&amp; more</b>. " * 11
    long_text = "\n\n".join(paragraph.strip() for _ in range(14))[:10_000]
    api.flood["sendMessageDraft"] = [1, 1]  # two drafts refused: skipped, never queued
    rig.script.chunk_delay = 0.002  # ~1,400 words in ~3 s: several edits
    started = time.monotonic()
    api.send(7, long_text)
    answer = _reply_to(rig, 7, long_text, "alice")
    messages = api.messages_to(7)
    bodies = [m["text"] for m in messages]
    stored_text = rig.turns(7, "alice")[0][1]
    assert stored_text == long_text, (len(stored_text), len(long_text))
    assert len(answer) > 10_000 and len(bodies) == 3, [len(b) for b in bodies]
    assert "".join(bodies) == answer  # nothing lost, nothing changed
    assert all(len(b) <= 4096 for b in bodies)
    assert bodies[0].endswith((".", "\n", " ")) and "*bold*" in bodies[1]
    # No parse mode is ever sent, so markup characters arrive as written.
    assert not any(
        p.get("parse_mode") for p in api.seen("sendMessage") + api.seen("editMessageText")
    )
    # A private chat streams as a draft ("Thinking…" first), then gets the final messages:
    # no edits at all, drafts at most one per 0.3 s interval, the refused ones skipped.
    assert not api.seen("editMessageText", 7)
    # "Thinking…" (an empty draft) was refused, so "typing…" stands in for it.
    drafts = api.drafts_to(7)
    assert drafts and all(b.startswith(a) for a, b in itertools.pairwise(drafts)), "drafts grow"
    assert drafts[0] and answer.startswith(drafts[-1])
    assert api.seen("sendChatAction", 7)
    times = [t for m, p, t in api.calls if m == "sendMessageDraft"]
    gaps = [b - a for a, b in itertools.pairwise(times[2:])]
    assert all(g >= 0.25 for g in gaps), gaps
    assert time.monotonic() - started < 30
    assert "Traceback" not in rig.stderr()


def test_errors_are_one_line_for_people(rig: Rig) -> None:
    api = rig.api
    rig.registry.add_user(51)
    rig.registry.set_limits(51, messages_per_day=0)
    api.send(51, "over quota?")
    line = api.wait(lambda: [m["text"] for m in api.messages_to(51)])
    assert line[0].startswith("You have used today's quota. It resets at 00:00 UTC")

    rig.script.default = "500"
    api.send(52, "model down?")
    line = api.wait(lambda: [m["text"] for m in api.messages_to(52)])
    assert line[-1] == "Your secretary is unavailable right now; please try again in a minute."
    rig.script.default = "ok"

    err = rig.stderr()
    assert "Traceback" not in err
    assert rig.turns(51, "alice") == [] and rig.turns(52, "alice") == []


def test_in_groups_only_mentions_and_replies_are_answered(rig: Rig) -> None:
    api = rig.api
    group = {"id": -1001, "type": "group", "title": "team"}
    api.send(71, "talking among ourselves", chat=group)
    api.send(71, "@sec_bot what is the plan?", chat=group)
    answer = _reply_to_in(rig, -1001, 71, "what is the plan?", "alice")
    sent = api.messages_to(-1001)
    assert [m["text"] for m in sent] == [answer]
    assert api.seen("sendMessage", -1001)[0].get("reply_to_message_id")
    assert [c for r, c in rig.turns(71, "alice") if r == "user"] == ["what is the plan?"]


def test_no_secretary_at_all(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    engine.dispose()
    with bot_api() as (api_url, api):
        proc = subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "bot"],
            env=_env(db_url, api_url, "http://127.0.0.1:9/v1", tmp_path / "home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            api.wait(lambda: api.seen("setMyCommands"))
            api.send(61, "anyone there?")
            line = api.wait(lambda: [m["text"] for m in api.messages_to(61)])
            assert line == ["No secretary is available right now; please try again later."]
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    ("token", "api_url", "code", "fragment"),
    [
        ("", None, 1, "no bot token"),
        ("not-a-token", None, 1, "malformed"),
        ("111:wrong-token-for-the-double", "DOUBLE", 1, "rejected the token"),
        (TOKEN, "http://127.0.0.1:9", 3, "cannot reach the Bot API"),
    ],
)
def test_bot_start_failures(
    tmp_path: Path, token: str, api_url: str | None, code: int, fragment: str
) -> None:
    with bot_api() as (double_url, _api):
        env = _env(f"sqlite:///{tmp_path / 'x.db'}", double_url, "http://127.0.0.1:9/v1", tmp_path)
        env["SECRETARIES_TELEGRAM_TOKEN"] = token
        if api_url != "DOUBLE":
            env.pop("SECRETARIES_TELEGRAM_API_URL")
            if api_url:
                env["SECRETARIES_TELEGRAM_API_URL"] = api_url
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", "bot"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("Error: ") and fragment in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if token:
        assert token not in done.stderr


def test_with_a_worker_and_the_queue(tmp_path: Path, redis_url: str) -> None:
    """bot (enqueue) → worker → replies stream → bot's sender → sendMessage."""
    import uuid

    from secretaries_core.context import open_context_store

    db_url = f"sqlite:///{tmp_path / 'q.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    registry.create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt="You are alice.", is_default=True)
    )
    prefix = f"tg{uuid.uuid4().hex[:6]}:"
    with bot_api() as (api_url, api), llm_server() as (llm_url, _script):
        env = _env(db_url, api_url, llm_url, tmp_path / "home")
        env.update(
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_CONTEXT_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_QUEUE_LEASE="8",
        )
        logs = [(tmp_path / "bot.log").open("w"), (tmp_path / "worker.log").open("w")]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "secretaries_cli", *cmd],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
            for cmd, log in ((["bot"], logs[0]), (["worker"], logs[1]))
        ]
        try:
            api.wait(lambda: api.seen("setMyCommands"))
            api.send(81, "/start")
            board = _picker(api, 81)
            assert "\u2713 alice" in next(iter(_buttons(board)))
            api.send(81, "through the queue")
            store = open_context_store(
                redis_url, policy=Settings.load(env={}).context_policy, prefix=prefix
            )
            sid = registry.get_secretary("alice").id

            def stored() -> str | None:
                turns = store.read(81, sid)
                return turns[1].content if len(turns) == 2 else None

            answer = api.wait(stored)
            assert answer == "<You are alice.> re: through the queue (0 earlier)"
            api.wait(lambda: any(m["text"] == answer for m in api.messages_to(81)))
            assert store.read(81, sid)[0].metadata == {
                "update_id": str(
                    next(
                        u["update_id"]
                        for u in api.history
                        if "message" in u and u["message"]["text"] == "through the queue"
                    )
                )
            }
            store.close()
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=30)
            for log in logs:
                log.close()
        for name in ("bot.log", "worker.log"):
            text = (tmp_path / name).read_text()
            assert "Traceback" not in text, text[-2000:]
        assert [p.returncode for p in procs] == [0, 0]
    engine.dispose()


def test_a_bot_api_without_drafts_streams_by_edits(rig: Rig) -> None:
    api = rig.api
    api.drafts = False  # an older Bot API: sendMessageDraft is an unknown method
    rig.script.chunk_delay = 0.05
    question = " ".join(f"word{i}" for i in range(40))
    api.send(17, question)
    answer = _reply_to(rig, 17, question, "alice")
    assert [m["text"] for m in api.messages_to(17)] == [answer]
    assert api.seen("sendMessageDraft", 17) and not api.drafts_to(17)
    assert api.seen("editMessageText", 17)  # the message grew by edits instead
    assert "Traceback" not in rig.stderr()


def test_a_slow_model_shows_thinking_first(rig: Rig) -> None:
    """No word within a second: the private chat shows the empty ("Thinking…") draft."""
    api = rig.api
    rig.script.latency = 1.6
    api.send(18, "take your time")
    answer = _reply_to(rig, 18, "take your time", "alice")
    drafts = api.drafts_to(18)
    assert drafts and drafts[0] == "", drafts
    assert [m["text"] for m in api.messages_to(18)] == [answer]
