"""`usage`, `users limit` and quotas through the CLI, and the quota race across 8 processes."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.cli.conftest import Run, as_json, failed, ok


def _setup(cli: Run) -> None:
    ok(
        cli(
            "create",
            "alice",
            "--model",
            "echo",
            "--prompt",
            "A",
            "--default",
            "--param",
            "price_prompt=1000000",
            "--param",
            "price_completion=0",
        )
    )
    ok(cli("create", "bob", "--model", "echo", "--prompt", "B"))


def test_usage_json_has_the_spec_shape(cli: Run) -> None:
    _setup(cli)
    ok(cli("chat", "21", "one"))
    ok(cli("chat", "21", "two"))
    ok(cli("assign", "21", "bob"))
    ok(cli("chat", "21", "three"))
    ok(cli("chat", "22", "four"))
    doc = as_json(cli("usage", "--json"))
    assert {"messages", "prompt_tokens", "completion_tokens", "by_secretary"} <= set(doc)
    assert doc["messages"] == 4
    assert set(doc["by_secretary"]) == {"alice", "bob"}
    for name in ("alice", "bob"):
        assert {"messages", "prompt_tokens", "completion_tokens"} <= set(doc["by_secretary"][name])
    assert doc["by_secretary"]["alice"]["messages"] == 3
    # The echo model reports nothing: every count is ours, and marked as such.
    assert doc["estimated_calls"] == 4
    # A price of 1,000,000 per million prompt tokens: the cost is the prompt tokens.
    alice = doc["by_secretary"]["alice"]
    assert alice["cost"] == alice["prompt_tokens"]
    assert "cost" not in doc["by_secretary"]["bob"]
    mine = as_json(cli("usage", "--user", "21", "--secretary", "bob", "--since", "1d", "--json"))
    assert mine["messages"] == 1 and list(mine["by_secretary"]) == ["bob"]
    table = ok(cli("usage")).stdout
    assert "alice" in table and "bob" in table and "cost" in table


def test_usage_errors(cli: Run) -> None:
    _setup(cli)
    failed(cli("usage", "--user", "999"), 1, "999")
    failed(cli("usage", "--secretary", "nobody"), 1, "nobody")
    failed(cli("usage", "--since", "soon"), 2)
    failed(cli("usage", "--user", "x y"), 2)


def test_users_limit_and_the_quota_refusal(cli: Run) -> None:
    _setup(cli)
    ok(cli("users", "add", "31"))
    failed(cli("users", "limit", "999", "--messages-per-day", "2"), 1, "999")
    failed(cli("users", "limit", "31", "--messages-per-day", "two"), 2)
    failed(cli("users", "limit", "31", "--messages-per-day", "-1"), 2)
    doc = as_json(cli("users", "limit", "31", "--messages-per-day", "2", "--json"))
    assert doc == {"telegram_id": 31, "messages_per_day": 2, "tokens_per_day": None}
    ok(cli("chat", "31", "a"))
    ok(cli("chat", "31", "b"))
    before = as_json(cli("contexts", "show", "31", "--json"))
    failed(cli("chat", "31", "c"), 1, "quota of 2 messages", "resets at", "00:00 UTC")
    assert as_json(cli("contexts", "show", "31", "--json")) == before
    assert as_json(cli("usage", "--user", "31", "--json"))["messages"] == 2
    # `none` removes the override; no other limit applies then.
    ok(cli("users", "limit", "31", "--messages-per-day", "none"))
    ok(cli("chat", "31", "c"))
    doc = as_json(cli("users", "limit", "31", "--json"))
    assert doc["messages_per_day"] is None


def test_8_processes_racing_at_a_limit_of_3_let_exactly_3_through(
    db_url: str, tmp_path: Path
) -> None:
    exe = [sys.executable, "-m", "secretaries_cli", "--database-url", db_url]
    env = {
        **os.environ,
        "SECRETARIES_HOME": str(tmp_path / "home"),
        "SECRETARIES_MESSAGES_PER_DAY": "3",
    }
    subprocess.run(
        [*exe, "create", "alice", "--model", "echo", "--prompt", "A", "--default"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([*exe, "users", "add", "41"], env=env, check=True, capture_output=True)

    def one(i: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*exe, "chat", "41", f"race {i}"], env=env, capture_output=True, text=True, timeout=120
        )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 0, 0, 1, 1, 1, 1, 1], [(r.returncode, r.stderr) for r in results]
    for r in results:
        if r.returncode:
            assert r.stderr.startswith("Error: ") and "quota of 3 messages" in r.stderr
            assert "Traceback" not in r.stderr
    shown = subprocess.run(
        [*exe, "contexts", "show", "41", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.count('"role": "user"') == 3
