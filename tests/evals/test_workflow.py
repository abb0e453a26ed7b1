"""docs/evals.md's whole loop, run as written: every `secretaries …` line of its block, in
order, as processes of their own, against the model double (which also judges). Once the
canary is live the double starts answering badly; the judge rolls the canary back after
`--min-messages` judged replies, not before. The figures are printed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.llm_server import llm_server

ROOT = Path(__file__).resolve().parents[2]


def _block(text: str, heading: str, fence: str) -> str:
    return text.split(heading, 1)[1].split(fence, 1)[1].split("```")[0]


@pytest.mark.long
def test_the_whole_loop_runs_as_written(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "evals.md").read_text(encoding="utf-8")
    (tmp_path / "alice-evals.yaml").write_text(_block(doc, "## A suite", "```yaml"))
    commands = [
        line
        for line in _block(doc, "## The whole loop", "```bash").splitlines()
        if line.startswith("secretaries ")
    ]
    assert len(commands) >= 8
    with llm_server() as (url, script):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        env.update(
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_OPENAI_BASE_URL=url,
            SECRETARIES_RESOLUTION_TTL="0",
            PYTHONPATH=str(ROOT),
        )

        def run(command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "secretaries_cli", *shlex.split(command)[1:]],
                env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120,
            )  # fmt: skip

        def status() -> dict[str, object]:
            done = run("secretaries rollout status alice --json")
            found: dict[str, object] = json.loads(done.stdout)
            return found

        # The gate refuses before any eval.
        made = [run(c) for c in commands[:2]]
        assert all(d.returncode == 0 for d in made), [d.stderr for d in made]
        refused = run("secretaries rollout start alice --percent 100 --require-eval")
        assert refused.returncode == 1 and "has no eval" in refused.stderr
        judged_at: list[tuple[int, str]] = []
        first_bad = 0.0
        out = ""
        for command in commands[2:]:
            if command.startswith("secretaries chat") and not first_bad:
                script.tag = "BAD "  # the candidate degrades once it is live
                first_bad = time.monotonic()
            done = run(command)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            out = done.stdout
            if command.startswith("secretaries chat"):
                now = status()
                candidate = now["candidate"]
                assert isinstance(candidate, dict)
                judged_at.append((int(candidate["judged"]), str(now["state"])))
    took = time.monotonic() - first_bad
    # Running while fewer than 5 replies were judged; rolled back at the 5th; the sixth
    # user is already back on the live version (nothing more judged).
    assert judged_at[:4] == [(n, "running") for n in range(1, 5)], judged_at
    assert judged_at[4:] == [(5, "rolled_back"), (5, "rolled_back")], judged_at
    assert "rollout rolled back" in out and "judge fail rate 1.00 above 0.3 over 5 judged" in out
    print(
        f"\nevals workflow: rolled back at {judged_at[4][0]} judged replies, "
        f"{took:.1f}s after the first bad reply (each step a CLI process)"
    )
