"""Every fault at once through the whole scaled path, and nothing lost, doubled or stuck.

3 `secretaries worker` processes, the bot in queue mode (its sender delivers the replies),
the API taking the updates (`POST /api/updates`), PostgreSQL for the catalog and usage,
Redis with AOF for the queue and the contexts, the model double in its own process and the
Bot API double. 3,000 updates from 300 users arrive over about 40 s while, in turn: a worker
is SIGKILLed, Redis is restarted on the same port, PostgreSQL is stopped for 10 s, the
model answers 500 for 10 s, the Bot API answers 500 for 10 s, and one user has blocked the
bot throughout. Afterwards every update is answered exactly once, every user's turns are
stored once each in send order, nothing is pending or dead-lettered, and the drain time
after each fault is printed (`pytest -s` shows it; docs/operations.md has the figures).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import pytest

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import open_context_store
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.queue import Queue
from tests.llm_server import llm_server_process
from tests.servers import free_port, private_postgres, restartable_redis
from tests.telegram.bot_api import bot_api
from tests.telegram.test_bot import _env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chaos")]
USERS, PER_USER = 300, 10
BLOCKED = 1_000_007  # this user's chat blocked the bot
API_TOKEN = "chaos-api-token-0123"


def _post(base: str, body: dict[str, object]) -> None:
    """POST an update until the API takes it (a client retries 503, as Telegram does)."""
    data = json.dumps(body).encode()
    for _ in range(600):
        request = urllib.request.Request(
            f"{base}/api/updates",
            data=data,
            headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status in (200, 202)
                return
        except urllib.error.HTTPError as exc:
            assert exc.code in (503, 500), exc.read()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API never took {body}")


def test_every_fault_at_once_nothing_lost_doubled_or_stuck(tmp_path: Path) -> None:
    users = [1_000_000 + u for u in range(USERS)]
    assert BLOCKED in users
    with (
        private_postgres() as pg,
        restartable_redis(aof=True) as redis,
        llm_server_process(0.05) as model,
        bot_api() as (bot_url, api),
    ):
        engine = make_engine(pg.url)
        schema.upgrade(engine)
        registry = SecretaryRegistry(engine)
        registry.create_secretary(
            AssistantCreate(name="alice", model="openai/m", prompt="A", is_default=True)
        )
        sid = registry.get_secretary("alice").id
        engine.dispose()
        prefix = f"chaos{uuid.uuid4().hex[:6]}:"
        env = _env(pg.url, bot_url, model, tmp_path / "home")
        env.update(
            SECRETARIES_QUEUE_URL=redis.url,
            SECRETARIES_CONTEXT_URL=redis.url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_QUEUE_LEASE="8",
            SECRETARIES_QUEUE_PARTITIONS="16",
            SECRETARIES_RESOLUTION_TTL="1",
            SECRETARIES_CONTEXT_MAX_MESSAGES="1000",
            SECRETARIES_API_TOKEN=API_TOKEN,
        )
        api.blocked.add(BLOCKED)
        logs: dict[str, IO[str]] = {}
        procs: dict[str, subprocess.Popen[str]] = {}

        def start(name: str, *cmd: str) -> None:
            logs[name] = (tmp_path / f"{name}.log").open("w")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "secretaries_cli", *cmd],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logs[name],
                text=True,
            )

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        queue = Queue(redis.url, prefix=prefix, partitions=16)
        try:
            start("api", "serve", "--port", str(port))
            for i in range(3):
                start(f"worker{i}", "worker", "--concurrency", "64")
            start("bot", "bot")
            api.wait(lambda: api.seen("setMyCommands"), timeout=120)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.2)

            def delivered() -> int:
                return sum(
                    1 for m in api.sent if m["chat"]["id"] != BLOCKED and " re: " in m["text"]
                )

            # Updates: user u's i-th message, users interleaved, ~75 a second.
            updates = [
                {
                    "update_id": 50_000 + i * USERS + k,
                    "telegram_id": user,
                    "text": f"m{i} of {user}",
                }
                for i in range(PER_USER)
                for k, user in enumerate(users)
            ]
            sent_at: list[float] = []
            posted = [0]  # deliverable updates the API has taken so far
            samples: list[tuple[float, int]] = []  # (time, replies delivered)
            done = threading.Event()
            lock = threading.Lock()

            def post(body: dict[str, object]) -> None:
                _post(base, body)
                if body["telegram_id"] != BLOCKED:
                    with lock:
                        posted[0] += 1

            def feed() -> None:
                with ThreadPoolExecutor(16) as pool:
                    for i in range(0, len(updates), USERS):
                        # One message per user at a time, as a user types: in order.
                        list(pool.map(post, updates[i : i + USERS]))
                        sent_at.append(time.monotonic())
                        time.sleep(max(0.0, 4.0 - (time.monotonic() - sent_at[-1])))

            def watch() -> None:
                while not done.is_set():
                    samples.append((time.monotonic(), delivered()))
                    time.sleep(0.2)

            feeder = threading.Thread(target=feed)
            watcher = threading.Thread(target=watch, daemon=True)
            feeder.start()
            watcher.start()
            posted_at_end: dict[str, int] = {}
            fault_ends: dict[str, float] = {}
            t0 = time.monotonic()

            def at(second: float) -> None:
                time.sleep(max(0.0, t0 + second - time.monotonic()))

            at(3)
            procs["worker0"].send_signal(signal.SIGKILL)
            procs["worker0"].wait(10)
            start("worker0b", "worker", "--concurrency", "64")
            fault_ends["worker SIGKILL"] = time.monotonic()
            posted_at_end["worker SIGKILL"] = posted[0]
            at(7)
            redis.restart(down_for=1.0)
            fault_ends["Redis restart (AOF)"] = time.monotonic()
            posted_at_end["Redis restart (AOF)"] = posted[0]
            at(11)
            pg.stop()
            time.sleep(10)
            pg.start()
            fault_ends["PostgreSQL down 10 s"] = time.monotonic()
            posted_at_end["PostgreSQL down 10 s"] = posted[0]
            at(24)
            urllib.request.urlopen(model.removesuffix("/v1") + "/default", data=b"500").close()
            time.sleep(10)
            urllib.request.urlopen(model.removesuffix("/v1") + "/default", data=b"ok").close()
            fault_ends["model 500 for 10 s"] = time.monotonic()
            posted_at_end["model 500 for 10 s"] = posted[0]
            at(36)
            api.down_until = time.monotonic() + 10
            time.sleep(10)
            fault_ends["Bot API 500 for 10 s"] = time.monotonic()
            posted_at_end["Bot API 500 for 10 s"] = posted[0]
            feeder.join()

            expected = (USERS - 1) * PER_USER
            deadline = time.monotonic() + 300
            while delivered() < expected and time.monotonic() < deadline:
                for name, proc in procs.items():
                    if name != "worker0":
                        assert proc.poll() is None, (name, (tmp_path / f"{name}.log").read_text())
                time.sleep(0.5)
            drained = time.monotonic()
            done.set()
            assert delivered() == expected, (
                delivered(),
                expected,
                queue.stats(),
                _missing(updates, api.sent, [fields for _, fields in queue.iter_replies()]),
            )
            last_fault = max(fault_ends.values())
            print(
                f"\nchaos: all {expected} replies delivered {drained - last_fault:.1f}s "
                f"after the last fault ended; feed took {sent_at[-1] - t0:.1f}s"
            )
            for name, ended in fault_ends.items():
                # Time from the fault's end until every reply to what was accepted before
                # that moment had reached the Bot API.
                caught_up = next(
                    (t for t, n in samples if t >= ended and n >= posted_at_end[name]), drained
                )
                print(f"chaos: {name}: drained {caught_up - ended:.1f}s after it ended")

            # Exactly once: one reply per update on the stream, one message per answer.
            replies = [fields for _, fields in queue.iter_replies()]
            counts = Counter((r["telegram_id"], r["update_id"]) for r in replies)
            assert len(counts) == len(updates) and max(counts.values()) == 1
            assert [r for r in replies if r["error"]] == []
            shown = Counter((m["chat"]["id"], m["text"]) for m in api.sent if " re: " in m["text"])
            assert max(shown.values()) == 1, shown.most_common(3)
            assert not [m for m in api.sent if m["chat"]["id"] == BLOCKED]
            # Every user's turns once each, in send order.
            store = open_context_store(
                redis.url, policy=Settings.load(env={}).context_policy, prefix=prefix
            )
            out_of_order = doubled = 0
            for user in users:
                said = [m.content for m in store.read(user, sid) if m.role == "user"]
                want = [f"m{i} of {user}" for i in range(PER_USER)]
                doubled += len(said) - len(set(said))
                out_of_order += said != want
            store.close()
            assert (doubled, out_of_order) == (0, 0)
            stats = queue.stats()
            assert stats["pending"] == 0 and stats["dead_letters"] == 0, stats
            procs["bot"].send_signal(signal.SIGTERM)
            procs["bot"].wait(60)
            bot_log = (tmp_path / "bot.log").read_text()
            assert bot_log.count("dropped (blocked)") == PER_USER
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for log in logs.values():
                log.close()
            queue.close()
        for name in procs:
            text = (tmp_path / f"{name}.log").read_text()
            assert "Traceback" not in text, (name, text[-3000:])


def _missing(
    updates: list[dict[str, Any]], sent: list[dict[str, Any]], replies: list[dict[str, Any]]
) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """The updates whose reply never reached the Bot API, each with what the replies
    stream holds for it (to tell an answer never written from one never delivered)."""
    shown = {
        (m["chat"]["id"], m["text"].split(" re: ", 1)[-1]) for m in sent if " re: " in m["text"]
    }
    out = []
    for update in updates:
        user, text = update["telegram_id"], str(update["text"])
        if user != BLOCKED and not any(k == user and v.startswith(text + " (") for k, v in shown):
            on_stream = [r for r in replies if str(r.get("update_id")) == str(update["update_id"])]
            out.append((user, text, on_stream))
    return out
