"""A candidate version whose model always fails rolls itself back, across two workers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from secretaries_core.catalog.models import AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import llm_server_process
from tests.queue.test_workers import _farm, _send

pytestmark = pytest.mark.xdist_group("queue-rollback")


def test_a_failing_candidate_is_rolled_back_and_everyone_answered(
    tmp_path: Path, redis_url: str
) -> None:
    users = 60
    with llm_server_process(0.01) as model:
        for farm in _farm(tmp_path, redis_url, model, SECRETARIES_RESOLUTION_TTL="0.5"):
            registry = SecretaryRegistry(make_engine(farm.db_url))
            registry.update_secretary(
                "alice", AssistantUpdate(model="openai/fail-m"), draft=True, note="broken"
            )
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "secretaries_cli",
                    "rollout",
                    "start",
                    "alice",
                    "--percent",
                    "50",
                    "--max-error-rate",
                    "0.2",
                    "--min-messages",
                    "20",
                ],
                env=farm.env,
                capture_output=True,
                text=True,
                check=True,
            )
            assert "running" in cli.stdout
            farm.start(2)
            started = time.monotonic()
            updates = _send(farm, users, 1)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if registry.rollout_status("alice")["state"] == "rolled_back":
                    break
                time.sleep(0.1)
            took = time.monotonic() - started
            status = registry.rollout_status("alice")
            assert status["state"] == "rolled_back", status
            candidate = status["candidate"]
            print(
                f"\nrolled back after {candidate['messages']} candidate message(s) "
                f"({candidate['errors']} errors), {took:.1f}s after the first update"
            )
            assert candidate["messages"] <= 2 * 20 + 10, candidate
            replies = farm.wait_replies(len(updates))
            assert [r for r in replies if r["error"]] == []
            assert {r["version"] for r in replies} == {"1"}  # every user back on live
            assert "rolled back" in farm.log(0) + farm.log(1)
            assert registry.versions("alice")[0].state == "retired"
            registry.engine.dispose()
