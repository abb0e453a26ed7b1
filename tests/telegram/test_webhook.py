"""Webhook ingress: real `serve` x2, `worker` and `bot --webhook` processes, the Bot API
double pushing updates to the webhook as Telegram does.

Messages are queued by whichever replica gets them and answered once; a delivery repeated
to the other replica is answered once; commands and the picker's buttons are handled by
the replica; a wrong secret is refused with nothing queued; a plain `bot` refuses to poll
while the webhook is set, and `bot --delete-webhook` goes back to long polling.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import llm_server
from tests.servers import free_port
from tests.telegram.bot_api import bot_api
from tests.telegram.test_bot import _buttons, _env, _picker
from tests.telegram.test_bot_faults import _answers, _start

SECRET = "s3cret_webhook-Token"


def _post(url: str, body: dict[str, Any], secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.long
def test_updates_through_the_webhook_on_two_replicas(tmp_path: Path, redis_url: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(db_url)
    schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    for name, default in (("alice", True), ("bob", False)):
        registry.create_secretary(
            AssistantCreate(
                name=name,
                model="openai/m",
                prompt=f"You are {name}.",
                is_default=default,
                description=name.title(),
            )
        )
    prefix = f"wh{uuid.uuid4().hex[:6]}:"
    ports = [free_port(), free_port()]
    hooks = [f"http://127.0.0.1:{p}/telegram/webhook" for p in ports]
    with bot_api() as (api_url, api), llm_server() as (llm_url, _script):
        env = _env(db_url, api_url, llm_url, tmp_path / "home")
        env.update(
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_CONTEXT_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_TELEGRAM_WEBHOOK_SECRET=SECRET,
        )
        logs = {n: (tmp_path / f"{n}.log").open("w") for n in ("api0", "api1", "worker", "bot")}
        procs = [
            _start(["serve", "--no-auth", "--port", str(p)], env, logs[f"api{i}"])
            for i, p in enumerate(ports)
        ]
        procs.append(_start(["worker"], env, logs["worker"]))
        procs.append(_start(["bot", "--webhook", hooks[0]], env, logs["bot"]))
        try:
            api.wait(lambda: all(_up(p) for p in ports), timeout=60)
            api.wait(lambda: api.webhook is not None, timeout=60)
            assert api.webhook is not None
            assert api.webhook["url"] == hooks[0]
            assert api.webhook["secret_token"] == SECRET
            assert set(json.loads(api.webhook["allowed_updates"])) == {
                "message",
                "callback_query",
                "message_reaction",
            }
            assert not api.seen("getUpdates"), "a webhook bot must not poll"

            # Without the secret, or with a wrong one: 401 and nothing queued.
            forged = {"update_id": 5000, "message": {"message_id": 1, "date": 0, "text": "x"}}
            assert _post(hooks[1], forged, None) == 401
            assert _post(hooks[1], forged, "wrong") == 401
            assert _post(hooks[1], {"no": "update"}, SECRET) == 422

            api.send(701, "hello")
            api.wait(lambda: len(_answers(api, 701)) == 1, timeout=60)
            first = api.history[-1]["update_id"]
            # Telegram sends it again, to the other replica: taken once.
            api.push_again(first, hooks[1])
            assert api.pushes[-1] == (first, hooks[1], 200)

            # Commands and the picker's buttons are handled by the replica.
            api.send(701, "/start")
            board = _picker(api, 701)
            buttons = _buttons(board)
            bob = next(v for k, v in buttons.items() if k.startswith("bob"))
            api.press(701, board, bob)
            api.wait(lambda: registry.current(701)[1].name == "bob", timeout=30)
            api.send(701, "and now?")
            api.wait(lambda: len(_answers(api, 701)) == 2, timeout=60)
            time.sleep(1.0)  # a second answer to the repeated update would be here by now
            answers = _answers(api, 701)
            assert len(answers) == 2, answers
            assert answers[0].startswith("<You are alice.> re: hello")
            assert answers[1].startswith("<You are bob.> re: and now?")
            assert not any(u == 5000 for u, _url, _s in api.pushes)

            # A plain bot cannot poll while the webhook is set: it says what to do.
            plain = subprocess.run(
                [sys.executable, "-m", "secretaries_cli", "bot"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert plain.returncode == 1, plain.stderr
            assert "Error: a webhook is set" in plain.stderr
            assert "--delete-webhook" in plain.stderr and "Traceback" not in plain.stderr
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=30)
            for log in logs.values():
                log.close()
        for name in ("api0", "api1", "bot", "worker"):
            assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name

        # Back to long polling.
        with (tmp_path / "poll.log").open("w") as log:
            poller = _start(["bot", "--delete-webhook"], env, log)
            worker = _start(["worker"], env, log)
            try:
                api.wait(lambda: api.webhook is None and api.seen("getUpdates"), timeout=60)
                api.send(702, "polled")
                api.wait(lambda: len(_answers(api, 702)) == 1, timeout=60)
            finally:
                for proc in (poller, worker):
                    proc.send_signal(signal.SIGTERM)
                for proc in (poller, worker):
                    proc.wait(timeout=30)
    engine.dispose()
