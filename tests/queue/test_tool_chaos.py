"""Tool calls exactly once through the scaled path, while workers die and stores go away.

3 `secretaries worker` processes, the API taking updates (`POST /api/updates`), PostgreSQL
for the catalog and usage, Redis with AOF for the queue and the contexts (and so the tool
ledger), the model double in its own process and a side-effecting HTTP tool (a booking
function in this process) that records every call's `Idempotency-Key`. 300 messages, each
making the model call the tool once (then answer with its result), arrive over ~20 s
while a worker is SIGKILLed between rounds, Redis is restarted (AOF) and PostgreSQL is
stopped for 10 s.

Afterwards: no call id reached the tool twice, every message has exactly one reply, and
every call id reached the tool once — except calls that the killed worker had in flight:
those are never sent again (their results died with the worker, or they had not left
yet), and their replies say the outcome is unknown. The figures are printed.
"""

from __future__ import annotations

import asyncio
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
from typing import IO

import pytest
from aiohttp import web

from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.queue import Queue
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import ToolSpec
from tests.llm_server import llm_server_process
from tests.queue.test_chaos import _post
from tests.servers import app_in_thread, free_port, private_postgres, restartable_redis
from tests.telegram.test_bot import _env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chaos")]
USERS, PER_USER = 100, 3
API_TOKEN = "chaos-api-token-0123"
SCHEMA = {"type": "object", "properties": {"room": {"type": "string"}}, "required": ["room"]}


def _busiest(
    url: str, queue: Queue, procs: dict[str, subprocess.Popen[str]]
) -> tuple[str, set[int]]:
    """The worker process holding the most partition leases (worker ids carry the pid),
    and those partitions."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url)
    try:
        owners = {
            n: str(client.get(queue.keys.lease(n)) or b"", "utf-8")
            for n in range(queue.keys.partitions)
        }
    finally:
        client.close()
    held: dict[str, set[int]] = {}
    for n, owner in owners.items():
        for name, proc in procs.items():
            if f"-{proc.pid}-" in owner:
                held.setdefault(name, set()).add(n)
    assert held, owners
    name = max(held, key=lambda k: len(held[k]))
    return name, held[name]


def test_each_tool_call_reaches_the_tool_once_through_kills_and_outages(
    tmp_path: Path,
) -> None:
    reached: list[str] = []
    answered_at: dict[str, float] = {}  # call id -> when the tool answered it
    lock = threading.Lock()

    async def book(request: web.Request) -> web.Response:
        body = await request.json()
        with lock:
            reached.append(request.headers["Idempotency-Key"])
        answered_at[request.headers["Idempotency-Key"]] = time.monotonic() + 0.02
        await asyncio.sleep(0.02)
        return web.json_response({"booked": body["room"]})

    app = web.Application()
    app.router.add_post("/book", book)
    users = [2_000_000 + u for u in range(USERS)]
    with (
        private_postgres() as pg,
        restartable_redis(aof=True) as redis,
        llm_server_process(0.25) as model,
        app_in_thread(app, name="booking") as tool_port,
    ):
        engine = make_engine(pg.url)
        schema.upgrade(engine)
        ToolRegistry(engine).add(
            ToolSpec("book", "http", url=f"http://127.0.0.1:{tool_port}/book", schema=SCHEMA)
        )
        SecretaryRegistry(engine).create_secretary(
            AssistantCreate(
                name="alice", model="openai/m", prompt="A", is_default=True,
                params={"tools": "book"},
            )
        )  # fmt: skip
        engine.dispose()
        prefix = f"tools{uuid.uuid4().hex[:6]}:"
        env = _env(pg.url, "http://127.0.0.1:9", model, tmp_path / "home")
        env.update(
            SECRETARIES_QUEUE_URL=redis.url,
            SECRETARIES_CONTEXT_URL=redis.url,
            SECRETARIES_REDIS_PREFIX=prefix,
            SECRETARIES_QUEUE_LEASE="6",
            SECRETARIES_QUEUE_PARTITIONS="8",
            SECRETARIES_RESOLUTION_TTL="30",
            SECRETARIES_API_TOKEN=API_TOKEN,
        )
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
        queue = Queue(redis.url, prefix=prefix, partitions=8)
        try:
            start("api", "serve", "--port", str(port))
            for i in range(3):
                start(f"worker{i}", "worker", "--concurrency", "16")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.2)
            updates = [
                {
                    "update_id": 70_000 + i * USERS + k,
                    "telegram_id": user,
                    "text": f"m{i} of {user} TOOLS: "
                    + json.dumps([[["book", {"room": f"r{i}-{user}"}]]]),
                }
                for i in range(PER_USER)
                for k, user in enumerate(users)
            ]

            def replies() -> dict[tuple[str, str], list[dict[str, str]]]:
                found: dict[tuple[str, str], list[dict[str, str]]] = {}
                for _id, fields in queue.iter_replies():
                    key = (str(fields["telegram_id"]), str(fields["update_id"]))
                    found.setdefault(key, []).append(fields)
                return found

            def feed() -> None:
                with ThreadPoolExecutor(8) as pool:
                    for i in range(0, len(updates), USERS):
                        list(pool.map(lambda body: _post(base, body), updates[i : i + USERS]))
                        time.sleep(3.0)

            feeder = threading.Thread(target=feed)
            feeder.start()
            t0 = time.monotonic()

            # A worker dies between rounds: right after the tool answered one of its calls
            # (the next model round is 0.25 s long), with others of its calls in flight.
            # In the thick of the second wave (a fifth of its calls answered), at a moment
            # chosen by condition, not by the clock: the busiest worker then holds a turn
            # whose call was answered (and stored) over 50 ms ago and whose reply is due.
            while len(reached) < USERS + USERS // 5 and time.monotonic() < t0 + 30:
                time.sleep(0.005)
            user_of = {str(u["update_id"]): int(str(u["telegram_id"])) for u in updates}
            chosen_by = time.monotonic() + 30
            while True:
                victim, held = _busiest(redis.url, queue, procs)
                replied_now = {update for _user, update in replies()}
                now = time.monotonic()
                between = [
                    call for call, at in list(answered_at.items())
                    if 0.05 < now - at < 0.2
                    and call.split(":")[0] not in replied_now
                    and user_of[call.split(":")[0]] % queue.keys.partitions in held
                ]  # fmt: skip
                if between or now > chosen_by:
                    break
                time.sleep(0.005)
            procs[victim].send_signal(signal.SIGKILL)
            with lock:
                reached_before = set(reached)
            replied_before = {update for _user, update in replies()}
            procs[victim].wait(10)
            start("restarted", "worker", "--concurrency", "16")
            # One fault after the other, timed from the kill (a loaded machine may reach it
            # late): the replacement is up before Redis restarts, and before PostgreSQL
            # stops (a worker that starts with the catalog down refuses to run, exit 3).
            restarted_log = tmp_path / "restarted.log"
            deadline = time.monotonic() + 60
            while "started (" not in restarted_log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            killed_at = time.monotonic()
            redis.restart(down_for=1.0)
            time.sleep(max(0.0, killed_at + 3 - time.monotonic()))
            pg.stop()
            time.sleep(10)
            pg.start()
            feeder.join()

            deadline = time.monotonic() + 240
            while len(replies()) < len(updates) and time.monotonic() < deadline:
                for name, proc in procs.items():
                    if name != victim:
                        assert proc.poll() is None, (name, (tmp_path / f"{name}.log").read_text())
                time.sleep(0.5)
            found = replies()
            assert len(found) == len(updates), (len(found), len(updates), queue.stats())
            assert max(len(v) for v in found.values()) == 1  # one reply per message
            assert [v for v in found.values() if v[0].get("error")] == []
            counts = Counter(reached)
            expected = {f"{u['update_id']}:0:0" for u in updates}
            assert set(counts) <= expected, set(counts) - expected
            assert max(counts.values()) == 1, counts.most_common(3)  # never twice
            unknown = [
                key
                for key, v in found.items()
                if "interrupted before its result was stored" in v[0]["text"]
            ]
            never_sent = expected - set(counts)
            unknown_ids = {f"{update}:0:0" for _user, update in unknown}
            # The calls the killed worker had in flight: sent (or about to be) but their
            # results not stored. None is sent again; their replies say the outcome is
            # unknown. Any call id that never reached the tool is one of them.
            assert never_sent <= unknown_ids, never_sent - unknown_ids
            # Only the killed worker loses results (a live worker keeps them through a
            # Redis restart and records them on its retry): at most its concurrency.
            assert len(unknown_ids) <= 16, unknown_ids
            for key, v in found.items():
                if key not in unknown:
                    assert v[0]["text"].startswith('results: {"booked": "r'), v[0]["text"]
            # Turns the killed worker was in the middle of — their call answered, their
            # reply not yet given — were finished by another worker with the stored result
            # (each of those call ids reached the tool once: asserted above).
            spanned = [
                u for u in updates
                if f"{u['update_id']}:0:0" in reached_before
                and str(u["update_id"]) not in replied_before
                and int(str(u["telegram_id"])) % queue.keys.partitions in held
                and (str(u["telegram_id"]), str(u["update_id"])) not in unknown
            ]  # fmt: skip
            assert spanned, "the kill interrupted no turn between its rounds"
            print(
                f"\ntool chaos: {len(spanned)} turns interrupted between rounds by the kill "
                "were finished elsewhere with their stored results"
                f"\ntool chaos: {len(updates)} messages; {len(counts)} call ids reached the "
                f"tool, each once (0 twice); {len(unknown_ids)} were in flight on the killed "
                f"worker (results lost with it: not sent again, the model told the outcome "
                f"is unknown), of which {len(never_sent)} had not been sent yet"
            )
            stats = queue.stats()
            assert stats["pending"] == 0 and stats["dead_letters"] == 0, stats
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
