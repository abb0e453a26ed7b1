"""A bot author's view: a secretary with a tool, in the real `secretaries bot` process.

While the tool runs (a booking function that takes 1.5 s), the chat shows its name — in
the draft of a private chat, in the growing message of a group — and then the reply that
uses its result.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server
from tests.telegram.bot_api import bot_api
from tests.telegram.test_bot import _env
from tests.tools.test_tools import SCHEMA, http_tool_server

ASK = "book it TOOLS: " + json.dumps([[["book", {"room": "T", "hour": 1.5}]]])


def test_the_chat_shows_the_running_tool_then_the_reply(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'bot.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    with (
        http_tool_server() as (tool_url, seen),
        bot_api() as (api_url, api),
        llm_server() as (llm_url, _script),
    ):
        ToolRegistry(engine).add(ToolSpec("book", "http", url=tool_url + "/slow", schema=SCHEMA))
        SecretaryRegistry(engine).create_secretary(
            AssistantCreate(
                name="alice", model="openai/m", prompt="A.", is_default=True,
                params={"tools": "book"},
            )
        )  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "bot", "--edit-interval", "0.3"],
            env=_env(db_url, api_url, llm_url, tmp_path / "home"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            api.wait(lambda: api.seen("setMyCommands") or proc.poll() is not None)
            assert proc.poll() is None
            api.send(5, ASK)
            group = {"id": -300, "type": "group", "title": "team"}
            api.send(6, "@sec_bot " + ASK, chat=group)
            want = 'results: {"booked": {"room": "T", "hour": 1.5}}'
            api.wait(lambda: [m["text"] for m in api.messages_to(5)] == [want], timeout=60)
            api.wait(lambda: want in [m["text"] for m in api.messages_to(-300)], timeout=60)
            # Private chat: the draft named the tool while it ran.
            assert "🔧 book…" in api.drafts_to(5)
            # Group: the message grew with the tool's name, then became the reply.
            edits = [p["text"] for m, p, _t in api.calls if m in ("sendMessage", "editMessageText")
                     and p.get("chat_id") == "-300"]  # fmt: skip
            assert "🔧 book…" in edits, [
                (m, p) for m, p, _t in api.calls if p.get("chat_id") == "-300"
            ]
            assert len(seen) == 2
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    engine.dispose()
