"""Secrets in every shape, through every output: one table of shapes, fed everywhere.

Shapes: a bot token alone and inside a Bot API URL (`/bot<token>/`), URL passwords holding
`/`, `@` and `:` (raw and percent-encoded), an API key. Outputs: the scrubber itself, the
CLI's stderr for an unreachable store, the `bot` command against a Bot API that answers 5xx
and echoes its URL (as gateways do), and the services' root log handler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from secretaries_core.redact import remember, scrub, url_secrets
from tests.servers import threaded_http

TOKEN = "123456789:AAEhBOweik6ad9r_QXMENQjcrGbqCr4K-ta"
SHORT_TOKEN = "42:abc_short"
PASSWORDS = ["pa/ss", "p@ss:w0rd/x", "p%2Fss%40x", "s3cr:et/with@all"]
API_KEY = "sk-proj-Zx81kfj2KDk29dkalqPQ"

SHAPES = [
    (f"GET https://api.telegram.org/bot{TOKEN}/getMe failed", TOKEN),
    (f"token={TOKEN}", TOKEN),
    (f"the token {TOKEN} was refused", TOKEN),
    (f"POST http://gw.local/bot{SHORT_TOKEN}/sendMessage", SHORT_TOKEN),
    *[(f"cannot reach redis://:{pw}@10.0.0.5:6379/0 now", pw) for pw in PASSWORDS],
    *[(f"postgresql://app:{pw}@db:5432/app?sslmode=require", pw) for pw in PASSWORDS],
    (f"Incorrect API key provided: {API_KEY}", API_KEY),
    (f"Authorization: Bearer {API_KEY}", API_KEY),
]


def _secret_parts(secret: str) -> list[str]:
    # Any 4-character piece of the secret that is not a common word counts as a leak.
    return [secret] + [p for p in secret.replace("%2F", "/").split("/") if len(p) >= 4]


@pytest.mark.parametrize(("text", "secret"), SHAPES)
def test_every_shape_is_scrubbed(text: str, secret: str) -> None:
    clean = scrub(text)
    for part in _secret_parts(secret):
        assert part not in clean, (text, clean)


@pytest.mark.parametrize("password", PASSWORDS)
def test_url_secrets_finds_passwords_with_any_character(password: str) -> None:
    found = url_secrets(f"redis://user:{password}@host:6379/0?x=1")
    assert password in found


def test_a_remembered_flag_value_is_scrubbed_in_any_text() -> None:
    remember(["flag-secret-value-991"])
    assert "flag-secret-value-991" not in scrub("given --x flag-secret-value-991 here")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env["SECRETARIES_HOME"] = str(home)
    return env


@pytest.mark.parametrize("password", PASSWORDS)
def test_cli_stderr_never_shows_a_password(tmp_path: Path, password: str) -> None:
    env = _env(tmp_path)
    url = f"redis://:{password}@127.0.0.1:9/0"
    done = subprocess.run(
        [sys.executable, "-m", "secretaries_cli", "--context-url", url, "contexts", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("Error: ")
    assert "Traceback" not in done.stderr
    for part in _secret_parts(password):
        assert part not in done.stderr + done.stdout, done.stderr


class _Echo(BaseHTTPRequestHandler):
    """A Bot API gateway that fails with 5xx and repeats the URL it was asked for."""

    mode = "json"

    def _answer(self) -> None:
        if self.mode == "json":
            body = json.dumps(
                {"ok": False, "error_code": 500, "description": f"upstream failed: {self.path}"}
            ).encode()
            kind = "application/json"
        else:
            body = f"<html><h1>502 Bad Gateway</h1><p>{self.path}</p></html>".encode()
            kind = "text/html"
        self.send_response(500 if self.mode == "json" else 502)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def _echoing(mode: str) -> Iterator[str]:
    with threaded_http(type("Handler", (_Echo,), {"mode": mode})) as base:
        yield base


@pytest.mark.parametrize(("mode", "how"), [("json", "flag"), ("html", "env")])
def test_bot_against_a_failing_bot_api_that_echoes_its_url(
    tmp_path: Path, mode: str, how: str
) -> None:
    with _echoing(mode) as url:
        env = _env(tmp_path)
        cmd = [sys.executable, "-m", "secretaries_cli", "bot", "--api-url", url]
        if how == "flag":
            cmd += ["--token", TOKEN]
        else:
            env["SECRETARIES_TELEGRAM_TOKEN"] = TOKEN
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert done.stderr.startswith("Error: "), out
    assert "Traceback" not in out
    assert TOKEN not in out and TOKEN.split(":")[1] not in out, out


def test_service_logs_of_library_records_are_scrubbed(tmp_path: Path) -> None:
    code = (
        "import logging\n"
        "from secretaries_cli.output import service_logging\n"
        "service_logging()\n"
        f"logging.getLogger('secretaries_core.anything').warning('call /bot{TOKEN}/getMe')\n"
        f"logging.getLogger('secretaries_core.anything').error('redis://:pa/ss@h:1 down')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "getMe" in done.stderr and TOKEN not in done.stderr
    assert "pa/ss" not in done.stderr and "down" in done.stderr


def _everything_leaked() -> str:
    return " | ".join(text for text, _secret in SHAPES)


def _assert_clean(text: str) -> None:
    for _shape, secret in SHAPES:
        for part in _secret_parts(secret):
            assert part not in text, (part, text[-2000:])


def test_api_error_bodies_never_show_a_secret(tmp_path: Path) -> None:
    """A provider error repeating every shape of secret: the 502 body shows none."""
    from fastapi.testclient import TestClient

    from secretaries_api import create_app
    from secretaries_api.services import Services
    from secretaries_core.catalog.models import AssistantCreate
    from secretaries_core.config import Settings
    from tests.llm_server import Script, llm_server

    with llm_server(Script(default="leak", leak=_everything_leaked())) as (url, _script):
        settings = Settings.load(
            env={
                "SECRETARIES_HOME": str(tmp_path),
                "SECRETARIES_OPENAI_BASE_URL": url,
                "SECRETARIES_MODEL_RETRIES": "0",
            }
        )
        services = Services.from_settings(settings)
        services.registry.create_secretary(
            AssistantCreate(name="alice", model="openai/m", prompt="A.", is_default=True)
        )
        remember([*PASSWORDS, API_KEY, TOKEN, SHORT_TOKEN])  # as a deployment's settings do
        with TestClient(create_app(services, api_token="t" * 16)) as client:
            response = client.post(
                "/api/messages",
                json={"user_id": 5, "text": "hello"},
                headers={"Authorization": "Bearer " + "t" * 16},
            )
        services.close()
    assert response.status_code == 502, response.text
    _assert_clean(response.text)


@pytest.mark.redis
def test_worker_replies_and_logs_never_show_a_secret(tmp_path: Path, redis_url: str) -> None:
    """Through a real worker: the reply's error text and the worker's log are clean."""
    from tests.llm_server import Script, llm_server
    from tests.queue.test_workers import _farm, _send

    with llm_server(Script(default="leak", leak=_everything_leaked())) as (model, _script):
        for farm in _farm(
            tmp_path,
            redis_url,
            model,
            SECRETARIES_OPENAI_API_KEY=API_KEY,
            SECRETARIES_TELEGRAM_TOKEN=TOKEN,
            SECRETARIES_DATABASE_PASSWORD=PASSWORDS[1],
        ):
            farm.start(1)
            _send(farm, 2, 1)
            replies = farm.wait_replies(2, timeout=60)
            farm.workers[0].terminate()
            farm.workers[0].communicate(timeout=60)
            assert all(r["error"] for r in replies)
            _assert_clean(repr(replies) + repr(farm.queue.dead_letters()) + farm.log(0))
