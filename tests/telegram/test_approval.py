"""Approval in the chat, queue mode: two real workers and a real bot against the Bot API
double, a `--confirm` booking tool counted at its HTTP server.

Approve → one call; deny → none, the model is told; no answer in time → none; the worker
that parked the turn SIGKILLed before the press → the other one resumes it, one call;
another user's press → refused. Each turn waits parked in Redis, on no worker.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server
from tests.telegram.bot_api import BotApi, bot_api
from tests.telegram.test_bot import _env
from tests.telegram.test_bot_faults import _start
from tests.tools.test_tools import SCHEMA, http_tool_server


def booking_catalog(engine: Engine, tool_url: str) -> None:
    """alice, the default, with one tool: `book`, an HTTP function that needs approval."""
    ToolRegistry(engine).add(
        ToolSpec("book", "http", url=tool_url + "/book", schema=SCHEMA, confirm=True)
    )
    SecretaryRegistry(engine).create_secretary(
        AssistantCreate(
            name="alice", model="m", prompt="A.", is_default=True, params={"tools": "book"}
        )
    )


def _ask(room: str) -> str:
    return "book it TOOLS: " + json.dumps([[["book", {"room": room, "hour": 9}]]])


def _keyboard(api: BotApi, chat: int, after: int) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        boards = [
            m
            for m in api.messages_to(chat)[after:]
            if "ap:" in json.dumps(m.get("reply_markup") or {})
        ]
        return boards[-1] if boards else None

    board: dict[str, Any] = api.wait(found, timeout=60)
    return board


def _buttons(board: dict[str, Any]) -> dict[str, str]:
    rows = board["reply_markup"]["inline_keyboard"]
    return {b["text"]: b["callback_data"] for row in rows for b in row}


def _final(api: BotApi, chat: int, after: int) -> str:
    def found() -> str | None:
        done = [m["text"] for m in api.messages_to(chat)[after:] if m["text"].startswith("results")]
        return done[-1] if done else None

    text: str = api.wait(found, timeout=60)
    return text


@pytest.mark.long
def test_approve_deny_timeout_a_killed_worker_and_a_strangers_press(
    tmp_path: Path, redis_url: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    with http_tool_server() as (tool_url, booked), llm_server() as (llm_url, _script):
        booking_catalog(engine, tool_url)
        with bot_api() as (api_url, api):
            env = _env(db_url, api_url, llm_url, tmp_path / "home")
            env.update(
                SECRETARIES_QUEUE_URL=redis_url,
                SECRETARIES_CONTEXT_URL=redis_url,
                SECRETARIES_REDIS_PREFIX=f"ap{uuid.uuid4().hex[:6]}:",
                SECRETARIES_CONFIRM_TIMEOUT="4",
                SECRETARIES_QUEUE_LEASE="3",
            )
            logs = {n: (tmp_path / f"{n}.log").open("w") for n in ("w1", "w2", "bot")}
            workers = {n: _start(["worker"], env, logs[n]) for n in ("w1", "w2")}
            bot = _start(["bot"], env, logs["bot"])
            try:
                api.wait(lambda: api.seen("setMyCommands"), timeout=60)

                # Approve: one call, the answer carries its result.
                api.send(901, _ask("A"))
                board = _keyboard(api, 901, 0)
                assert "book: room=A, hour=9" in board["text"]
                assert booked == []  # nothing runs before the press
                # Another user's press is refused; nothing is decided.
                api.press(902, board, _buttons(board)["❌ Deny"])
                api.wait(
                    lambda: any(
                        "Only the person" in c.get("text", "")
                        for c in api.seen("answerCallbackQuery")
                    )
                )
                api.press(901, board, _buttons(board)["✅ Approve"])
                assert "booked" in _final(api, 901, 0)
                assert len(booked) == 1
                api.wait(lambda: api.messages_to(901)[0]["text"].startswith("✅ Approved"))

                # Deny: no call; the model is told the user declined.
                seen = len(api.messages_to(903))
                api.send(903, _ask("B"))
                board = _keyboard(api, 903, seen)
                api.press(903, board, _buttons(board)["❌ Deny"])
                assert "the user declined it" in _final(api, 903, seen)

                # No answer in time: declined, the keyboard says so.
                api.send(904, _ask("C"))
                board = _keyboard(api, 904, 0)
                assert "did not answer in time" in _final(api, 904, 0)
                api.wait(lambda: "No answer" in api.messages_to(904)[0]["text"])
                assert len(booked) == 1

                # `/new` while a call waits: declined, nothing of that turn runs afterwards.
                api.send(906, _ask("N"))
                board = _keyboard(api, 906, 0)
                api.send(906, "/new")
                api.wait(lambda: len(api.messages_to(906)) >= 2, timeout=30)
                api.press(906, board, _buttons(board)["✅ Approve"])
                api.wait(lambda: api.messages_to(906)[0]["text"].startswith("❌ Declined"))
                time.sleep(1.0)  # a resumed turn would have called the tool by now
                assert len(booked) == 1
                assert not any(m["text"].startswith("results") for m in api.messages_to(906))

                # The worker that parked the turn dies before the press: the other resumes it.
                api.send(905, _ask("D"))
                board = _keyboard(api, 905, 0)
                update_id = api.history[-1]["update_id"]
                parker: str = api.wait(lambda: _parker_of(tmp_path, update_id), timeout=30)
                workers[parker].send_signal(signal.SIGKILL)
                workers[parker].wait(timeout=30)
                pressed = time.monotonic()
                api.press(905, board, _buttons(board)["✅ Approve"])
                assert "booked" in _final(api, 905, 0)
                resumed_in = time.monotonic() - pressed
                assert len(booked) == 2
                assert json.loads(booked[-1]["body"]) == {"room": "D", "hour": 9}
                print(f"press → resumed answer after a SIGKILL: {resumed_in:.2f}s")
            finally:
                for proc in (*workers.values(), bot):
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                for proc in (*workers.values(), bot):
                    proc.wait(timeout=60)
                for log in logs.values():
                    log.close()
    engine.dispose()
    for name in ("w1", "w2", "bot"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name


def _parker_of(tmp_path: Path, update_id: int) -> str | None:
    for name in ("w1", "w2"):
        if f"update {update_id} waits for approval" in (tmp_path / f"{name}.log").read_text():
            return name
    return None


def test_direct_mode_waits_in_the_bot_process(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'd.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    with http_tool_server() as (tool_url, booked), llm_server() as (llm_url, _script):
        booking_catalog(engine, tool_url)
        with bot_api() as (api_url, api), (tmp_path / "bot.log").open("w") as log:
            env = _env(db_url, api_url, llm_url, tmp_path / "home")
            env["SECRETARIES_CONFIRM_TIMEOUT"] = "30"
            bot = _start(["bot"], env, log)
            try:
                api.wait(lambda: api.seen("setMyCommands"), timeout=60)
                api.send(911, _ask("Z"))
                board = _keyboard(api, 911, 0)
                api.press(912, board, _buttons(board)["✅ Approve"])
                api.wait(
                    lambda: any(
                        "Only the person" in c.get("text", "")
                        for c in api.seen("answerCallbackQuery")
                    )
                )
                assert booked == []
                api.press(911, board, _buttons(board)["✅ Approve"])
                api.wait(lambda: len(booked) == 1, timeout=60)
                api.wait(lambda: "booked" in json.dumps(api.messages_to(911)), timeout=60)
                api.wait(lambda: api.messages_to(911)[0]["text"].startswith("✅ Approved"))
            finally:
                bot.send_signal(signal.SIGTERM)
                bot.wait(timeout=60)
    engine.dispose()
    assert len(booked) == 1
