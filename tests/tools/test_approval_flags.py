"""`--confirm` tools outside Telegram: `chat` and `POST /api/messages` decline the call
unless `--approve` / `approve: true`; counted at the tool's server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from secretaries_api.app import create_app
from secretaries_core.config import Settings
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import llm_server
from tests.telegram.test_approval import _ask, booking_catalog
from tests.tools.test_tools import http_tool_server


def test_chat_and_rest_decline_unless_approved(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'f.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    with http_tool_server() as (tool_url, booked), llm_server() as (llm_url, _script):
        booking_catalog(engine, tool_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update(
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_DATABASE_URL=db_url,
            SECRETARIES_OPENAI_BASE_URL=llm_url,
        )

        def chat(*extra: str, room: str) -> str:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "secretaries_cli",
                    "chat",
                    "7",
                    _ask(room),
                    "--json",
                    *extra,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return str(json.loads(done.stdout)["reply"])

        assert "could not be asked" in chat(room="A")
        assert booked == []
        assert "booked" in chat("--approve", room="B")
        assert [json.loads(b["body"])["room"] for b in booked] == ["B"]

        settings = Settings.load(env=env)
        with TestClient(create_app(settings=settings, api_token=None)) as client:
            body = {"user_id": 8, "text": _ask("C")}
            declined = client.post("/api/messages", json=body)
            assert declined.status_code == 200 and "could not be asked" in declined.json()["reply"]
            approved = client.post(
                "/api/messages", json={**body, "text": _ask("D"), "approve": True}
            )
            assert "booked" in approved.json()["reply"]
            streamed = client.post(
                "/api/messages?stream=true", json={**body, "text": _ask("E"), "approve": True}
            )
            assert '"state": "done"' in streamed.text
    assert [json.loads(b["body"])["room"] for b in booked] == ["B", "D", "E"]
    engine.dispose()
