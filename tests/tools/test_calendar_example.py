"""docs/tools.md, "A worked example: a calendar in Telegram", run as written: its server
file, its commands (the model pointed at the model double, Telegram at the Bot API
double), then the chat — approve once, deny once — counted in the server's own log."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.llm_server import llm_server
from tests.telegram.bot_api import TOKEN, bot_api
from tests.telegram.test_approval import _buttons, _final, _keyboard

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "docs" / "tools.md").read_text(encoding="utf-8")
    start = text.index("## A worked example: a calendar in Telegram")
    return text[start : text.index("\n## ", start + 5)]


def _commands(section: str) -> list[list[str]]:
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    joined = block.group(1).replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


@pytest.mark.long
def test_the_calendar_example_runs_as_written(tmp_path: Path) -> None:
    section = _section()
    server = re.search(r"```python\n(.*?)```", section, re.S)
    assert server is not None
    (tmp_path / "calendar_server.py").write_text(server.group(1))
    commands = _commands(section)
    assert commands[-1] == ["secretaries", "bot"]
    with llm_server() as (llm_url, _script), bot_api() as (api_url, api):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_OPENAI_BASE_URL=llm_url,
            SECRETARIES_TELEGRAM_TOKEN=TOKEN,
            SECRETARIES_TELEGRAM_API_URL=api_url,
        )
        for command in commands[:-1]:
            assert command[0] == "secretaries"
            done = subprocess.run(
                [sys.executable, "-m", "secretaries_cli", *command[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, (command, done.stderr)
        with (tmp_path / "bot.log").open("w") as log:
            bot = subprocess.Popen(
                [sys.executable, "-m", "secretaries_cli", "bot"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            try:
                api.wait(lambda: api.seen("setMyCommands"), timeout=60)
                create = [
                    ["calendar_write__create_event", {"day": "2026-12-07", "title": "Dentist"}]
                ]
                api.send(42, "Put the dentist on Monday TOOLS: " + json.dumps([create]))
                board = _keyboard(api, 42, 0)
                assert (
                    "calendar_write__create_event: day=2026-12-07, title=Dentist" in board["text"]
                )
                api.press(42, board, _buttons(board)["✅ Approve"])
                assert "created Dentist on 2026-12-07" in _final(api, 42, 0)
                seen = len(api.messages_to(42))
                again = [["calendar_write__create_event", {"day": "2026-12-08", "title": "Gym"}]]
                api.send(42, "And the gym on Tuesday TOOLS: " + json.dumps([again]))
                board = _keyboard(api, 42, seen)
                api.press(42, board, _buttons(board)["❌ Deny"])
                assert "the user declined it" in _final(api, 42, seen)
                # Reading needs no approval.
                seen = len(api.messages_to(42))
                look = [["calendar__list_events", {"day": "2026-12-07"}]]
                api.send(42, "What is on Monday? TOOLS: " + json.dumps([look]))
                assert "Standup" in _final(api, 42, seen)
            finally:
                bot.send_signal(signal.SIGTERM)
                bot.wait(timeout=60)
    # The server created exactly the approved event. (Each stdio session is its own
    # process: the calendar it lists is the one it started with.)
    assert (tmp_path / "created.log").read_text() == "2026-12-07 Dentist\n"
