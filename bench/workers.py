"""Workers end to end: enqueue → answer on the replies stream, vs `ahandle` in one process.

For 1, 2 and 4 `secretaries worker` processes (private Redis, SQLite catalog, Redis
contexts), with the echo model and with a 200 ms model (the loopback model server in its
own process): throughput and p50/p99 latency from enqueue to the reply entry. Baseline in
the same run: the same messages through `Orchestrator.ahandle` called directly in one
process (no queue). Then recovery: time from SIGKILLing a worker holding messages to the
last of them answered by the other worker.

Run: python -m bench.workers [--messages 2000] [--users 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import open_context_store
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from secretaries_core.queue import Queue, Update
from tests.llm_server import llm_server_process
from tests.servers import redis_server

ROOT = Path(__file__).resolve().parent.parent


def _catalog(path: Path, model: str) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    schema.upgrade(engine)
    SecretaryRegistry(engine).create_secretary(
        AssistantCreate(name="alice", model=model, prompt="A", is_default=True)
    )
    engine.dispose()
    return url


def _updates(messages: int, users: int) -> list[Update]:
    return [Update(i + 1, 1 + i % users, f"m{i}") for i in range(messages)]


async def _enqueue(queue: Queue, updates: list[Update], users: int) -> dict[int, float]:
    sent: dict[int, float] = {}
    for start in range(0, len(updates), users):
        batch = updates[start : start + users]
        now = time.time()
        await asyncio.gather(*(queue.aenqueue(u) for u in batch))
        sent.update({u.update_id: now for u in batch})
    await queue.aclose()
    return sent


def _collect(queue: Queue, count: int, timeout: float = 600) -> dict[int, float]:
    """update id -> reply time (the entry id's milliseconds), once `count` have arrived."""
    got: dict[int, float] = {}
    last = "0-0"
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for entry_id, fields in queue.iter_replies(last):
            last = entry_id
            got[int(fields["update_id"])] = int(entry_id.split("-")[0]) / 1000
        time.sleep(0.05)
    return got


def _worker_env(
    redis_url: str, db_url: str, model_url: str, home: Path, prefix: str
) -> dict[str, str]:
    """The environment of `secretaries worker` processes of one run (lease 5 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(
        SECRETARIES_HOME=str(home),
        SECRETARIES_DATABASE_URL=db_url,
        SECRETARIES_CONTEXT_URL=redis_url,
        SECRETARIES_REDIS_PREFIX=prefix,
        SECRETARIES_OPENAI_BASE_URL=model_url,
        SECRETARIES_MODEL_RETRIES="0",
        SECRETARIES_QUEUE_LEASE="5",
        PYTHONPATH=str(ROOT),
    )
    return env


def farm_run(
    redis_url: str, db_url: str, model_url: str, workers: int, messages: int, users: int, home: Path
) -> tuple[float, list[float]]:
    """Seconds for all messages, and each message's latency."""
    prefix = f"b{uuid.uuid4().hex[:6]}:"
    env = _worker_env(redis_url, db_url, model_url, home, prefix)
    queue = Queue(redis_url, prefix=prefix)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "worker", "--concurrency", "256"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while queue.stats()["workers"] < workers:
            time.sleep(0.1)
        time.sleep(1.0)  # partitions settle between the workers
        updates = _updates(messages, users)
        start = time.time()
        sent = asyncio.run(_enqueue(queue, updates, users))
        replies = _collect(queue, messages)
        end = max(replies.values())
        return end - start, [replies[u] - sent[u] for u in replies]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        queue.close()


def direct_run(
    redis_url: str, db_url: str, model_url: str, messages: int, users: int
) -> tuple[float, list[float]]:
    """The same messages through ahandle in this process (users concurrently)."""
    settings = replace(Settings.load(env={}), openai_base_url=model_url, model_max_retries=0)
    engine = make_engine(db_url)
    store = open_context_store(
        redis_url, policy=settings.context_policy, prefix=f"d{uuid.uuid4().hex[:6]}:"
    )
    orch = Orchestrator(SecretaryRegistry(engine), store, settings)
    updates = _updates(messages, users)
    latencies: list[float] = []

    async def one(u: Update) -> None:
        started = time.time()
        await orch.ahandle(u.telegram_id, u.text)
        latencies.append(time.time() - started)

    async def go() -> float:
        start = time.time()
        await asyncio.gather(*(one(u) for u in updates))
        took = time.time() - start
        await orch.aclose()
        return took

    took = asyncio.run(go())
    store.close()
    engine.dispose()
    return took, latencies


def recovery(redis_url: str, db_url: str, model_url: str, home: Path) -> float:
    """Seconds from SIGKILL of a busy worker to its messages answered by the other one."""
    prefix = f"r{uuid.uuid4().hex[:6]}:"
    env = _worker_env(redis_url, db_url, model_url, home, prefix)
    queue = Queue(redis_url, prefix=prefix)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        while queue.stats()["workers"] < 2:
            time.sleep(0.1)
        time.sleep(1.0)
        updates = _updates(400, 200)
        asyncio.run(_enqueue(queue, updates, 200))
        time.sleep(0.3)  # both hold messages in flight now
        procs[0].send_signal(signal.SIGKILL)
        killed = time.time()
        replies = _collect(queue, len(updates), timeout=120)
        return max(replies.values()) - killed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        queue.close()


def run(messages: int, users: int) -> list[Row]:
    """Every row; prints the latency percentiles on the way."""
    rows: list[Row] = []
    with redis_server() as (port, _root), TemporaryDirectory(prefix="secretaries-bench-") as tmp:
        redis_url = f"redis://127.0.0.1:{port}/0"
        for label, latency in (("echo", None), ("200 ms model", 0.2)):
            with llm_server_process(latency or 0.0) as model_url:
                model = "echo" if latency is None else "openai/m"
                db_url = _catalog(Path(tmp) / f"{label[:4]}.db", model)
                base, base_lat = direct_run(redis_url, db_url, model_url, messages, users)
                print(
                    f"{label}: ahandle in-process {messages / base:8.0f} msg/s, p50 "
                    f"{statistics.median(base_lat) * 1000:.0f} ms"
                )
                for workers in (1, 2, 4):
                    took, lat = farm_run(
                        redis_url, db_url, model_url, workers, messages, users, Path(tmp) / "home"
                    )
                    lat.sort()
                    print(
                        f"{label}: {workers} worker(s) {messages / took:8.0f} msg/s, p50 "
                        f"{lat[len(lat) // 2] * 1000:.0f} ms, p99 "
                        f"{lat[int(len(lat) * 0.99)] * 1000:.0f} ms"
                    )
                    rows.append(
                        Row(
                            f"{label}, {workers} worker(s), per message",
                            took / messages,
                            base / messages,
                            "ahandle in one process",
                        )
                    )
        with llm_server_process(0.2) as model_url:
            db_url = _catalog(Path(tmp) / "rec.db", "openai/m")
            seconds = recovery(redis_url, db_url, model_url, Path(tmp) / "home")
            print(f"recovery after SIGKILL (lease 5 s): {seconds:.1f} s")
    return rows


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    print_table("workers end to end", run(args.messages, args.users))


if __name__ == "__main__":
    main()
