"""Telegram at scale: the first visible piece in direct vs queue mode, and the send rate.

Real `secretaries bot` (and `secretaries worker`) processes, a private Redis, the Bot API
double (tests/telegram/bot_api.py, enforcing Telegram's three flood limits) and the model
double in its own process.

- First visible piece: from the update being available to the first text shown in the
  chat (a draft with text, or the final message when it came first), one user at a time
  (median). The model's first byte comes after 200 ms, then a
  word every 20 ms. Baseline: direct mode (the bot answers in its own process); queue mode
  adds the inbound stream, a worker, the live stream and the drafter. Target: queue ≤
  1.5x direct + 50 ms.
- Sustained send rate: CHATS private chats write at once, two workers answer at once (no
  model latency), and the final messages are counted between the 10th and the 90th
  percentile of their arrival. Baseline: Telegram's 30 messages a second (as seconds per
  message). Target ≥ 90% of it, with no 429.

Run: python -m bench.telegram [--messages 10] [--chats 600]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import llm_server_process
from tests.servers import redis_server
from tests.telegram.bot_api import TOKEN, BotApi, bot_api


def _env(tmp: Path, api_url: str, llm_url: str, redis_url: str | None) -> dict[str, str]:
    import os

    db = tmp / f"tg-{uuid.uuid4().hex[:6]}.db"
    engine = make_engine(f"sqlite:///{db}")
    schema.upgrade(engine)
    SecretaryRegistry(engine).create_secretary(
        AssistantCreate(name="alice", model="openai/m", prompt="You are alice.", is_default=True)
    )
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(
        SECRETARIES_HOME=str(tmp / "home"),
        SECRETARIES_DATABASE_URL=f"sqlite:///{db}",
        SECRETARIES_OPENAI_BASE_URL=llm_url,
        SECRETARIES_OPENAI_API_KEY="sk-bench",
        SECRETARIES_TELEGRAM_TOKEN=TOKEN,
        SECRETARIES_TELEGRAM_API_URL=api_url,
        SECRETARIES_RESOLUTION_TTL="60",
    )
    if redis_url:
        env.update(
            SECRETARIES_QUEUE_URL=redis_url,
            SECRETARIES_CONTEXT_URL=redis_url,
            SECRETARIES_REDIS_PREFIX=f"bt{uuid.uuid4().hex[:6]}:",
        )
    return env


@contextmanager
def _processes(env: dict[str, str], *commands: list[str]) -> Iterator[None]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cmd in commands
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _first_pieces(api: BotApi, messages: int, first_user: int) -> float:
    """Median seconds from an update to the first text shown in its chat: a draft with
    text, or the final message when the answer was complete before any draft (a loaded
    machine can finish a short answer before the first preview goes out)."""
    took = []
    for user in range(first_user, first_user + messages):
        started = time.monotonic()
        api.send(user, "tell me about the weather today, please")

        def shown(u: int = user) -> list[float]:
            drafts = [at for t, at in api.draft_texts.get(u, []) if t]
            finals = [at for (chat, _m), at in list(api.sent_at.items()) if chat == u]
            return sorted(drafts + finals)

        api.wait(shown, timeout=60)
        took.append(shown()[0] - started)
        time.sleep(0.3)
    return statistics.median(took)


def _send_rate(api: BotApi, chats: int) -> tuple[float, int]:
    """Final messages a second in the steady middle of a burst of `chats`, and the 429s."""
    users = range(50_000, 50_000 + chats)
    for user in users:
        api.send(user, "hello")
    api.wait(lambda: len(api.sent_at) >= chats, timeout=600)
    times = sorted(api.sent_at.values())
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    steady = sum(1 for t in times if low <= t <= high)
    return (steady - 1) / (high - low), len(api.refused)


def run(messages: int = 10, chats: int = 600) -> list[Row]:
    """The rows of this benchmark (a Bot API double per phase: no update is seen twice)."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(TemporaryDirectory()))
        port, _dir = stack.enter_context(redis_server())
        redis_url = f"redis://127.0.0.1:{port}/0"
        llm_url = stack.enter_context(llm_server_process(latency=0.2, chunk_delay=0.02))
        fast_llm = stack.enter_context(llm_server_process(latency=0.0))
        firsts = []
        for queue_url in (None, redis_url):
            with bot_api() as (api_url, api):
                api.limits = True
                workers = [["worker"]] if queue_url else []
                with _processes(_env(tmp, api_url, llm_url, queue_url), ["bot"], *workers):
                    api.wait(lambda: api.seen("setMyCommands"), timeout=60)
                    time.sleep(1)
                    firsts.append(_first_pieces(api, messages, 1000))
        with bot_api() as (api_url, api):
            api.limits = True
            env = _env(tmp, api_url, fast_llm, redis_url)
            with _processes(env, ["bot"], ["worker"], ["worker"]):
                api.wait(lambda: api.seen("setMyCommands"), timeout=60)
                time.sleep(1)
                rate, refused = _send_rate(api, chats)
    direct, queued = firsts
    return [
        Row("first visible piece: queue mode (median)", queued, direct, "direct mode"),
        Row(
            f"sustained finals, {chats} chats at once ({rate:.1f}/s, {refused} x 429)",
            1 / rate,
            1 / 30,
            "Telegram's 30 messages/s",
        ),
    ]


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--chats", type=int, default=600)
    args = parser.parse_args()
    print_table("Telegram at scale", run(args.messages, args.chats))


if __name__ == "__main__":
    main()
