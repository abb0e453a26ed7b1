"""Replay never repeats a side effect: 20 stored conversations of a secretary with a
read-only tool and a side-effecting one, replayed by the real `secretaries replay` process.

Calls are counted at the two tool servers. The side-effecting one gets none: a call the
conversation made then is answered with its stored result, one it did not make is answered
"not run in replay"; both are listed. The read-only one runs for real, once a conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context.base import Message
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server
from tests.tools.test_tools import SCHEMA, http_tool_server


def _ask(user: int) -> str:
    rounds = [
        [["look", {"room": f"R{user}", "hour": 9}], ["book", {"room": f"R{user}", "hour": 9}]]
    ]
    return f"plan my day TOOLS: {json.dumps(rounds)}"


def test_replaying_twenty_conversations_sends_no_side_effecting_call(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'r.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    with (
        http_tool_server() as (look_url, looked),
        http_tool_server() as (book_url, booked),
        llm_server() as (llm_url, _script),
    ):
        tools = ToolRegistry(engine)
        tools.add(ToolSpec("look", "http", url=look_url + "/look", schema=SCHEMA, read_only=True))
        tools.add(ToolSpec("book", "http", url=book_url + "/book", schema=SCHEMA))
        registry.create_secretary(
            AssistantCreate(
                name="alice",
                model="m",
                prompt="A.",
                is_default=True,
                params={"tools": "look,book"},
            )
        )
        settings = Settings.load(
            env={"SECRETARIES_HOME": str(tmp_path), "SECRETARIES_OPENAI_BASE_URL": llm_url}
        )
        store = SqlContextStore(engine, settings.context_policy)
        orch = Orchestrator(registry, store, settings)
        alice = registry.get_secretary("alice")

        async def live() -> None:
            # Users 1-10 talked to the live version: both tools ran, results stored.
            for user in range(1, 11):
                await orch.ahandle(user, _ask(user), idempotency_key=f"u{user}")
            await orch.aclose()

        asyncio.run(live())
        orch.close()
        # Users 11-20: conversations stored without tool rounds (say, before the tools).
        at = datetime.now(UTC)
        for user in range(11, 21):
            store.append(user, alice.id, Message("user", _ask(user), at))
            store.append(user, alice.id, Message("assistant", "Done.", at))
        store.close()
        assert (len(looked), len(booked)) == (10, 10)
        registry.update_secretary("alice", AssistantUpdate(prompt="A, briefly."), draft=True)

        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update(
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_DATABASE_URL=db_url,
            SECRETARIES_OPENAI_BASE_URL=llm_url,
        )
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", "replay", "alice", "--users", "20", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        text = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", "replay", "alice", "--users", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert text.returncode == 0, text.stderr
    engine.dispose()
    # The side-effecting tool got nothing more; the read-only one ran once a conversation
    # in each of the two replays.
    assert len(booked) == 10
    assert len(looked) == 10 + 20 + 2
    doc = json.loads(done.stdout)
    by_user = {c["telegram_id"]: c for c in doc["conversations"]}
    assert sorted(by_user) == list(range(1, 21))
    for user, conversation in by_user.items():
        (listed,) = conversation["not_run"]
        assert listed.startswith(f'book({{"room": "R{user}"')
        if user <= 10:
            assert listed.endswith("answered from the stored conversation")
            # The model got what the booking said then.
            assert "booked" in conversation["candidate_answer"]
        else:
            assert listed.endswith(")")
            assert "not run in replay" in conversation["candidate_answer"]
    assert "not run: book(" in text.stdout
