"""The release gates as an operator meets them: `eval` exit codes and documents, `replay
--judge`, `apply --canary --require-eval` with a suite next to the catalog file, the REST
endpoint, and tools in an eval (read-only ones run, the others are not run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.llm_server import Script, llm_server
from tests.tools.test_tools import SCHEMA, http_tool_server

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
judge_model: openai/judge
cases:
  - name: polite
    message: hello
    expect: [{contains: Alice}, {judge: Polite.}]
"""


class Cli:
    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
        self.env.update(
            SECRETARIES_HOME=str(tmp_path / "home"),
            SECRETARIES_OPENAI_BASE_URL=url,
            PYTHONPATH=str(ROOT),
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "secretaries_cli", *args],
            env=self.env, capture_output=True, text=True, cwd=self.tmp_path, timeout=120,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[tuple[Cli, Script]]:
    with llm_server() as (url, script):
        run = Cli(tmp_path, url)
        run.ok("create", "alice", "--model", "openai/m", "--prompt", "You are Alice.", "--default")
        yield run, script


def test_eval_exit_codes_documents_and_errors(cli: tuple[Cli, Script], tmp_path: Path) -> None:
    run, script = cli
    (tmp_path / "good.yaml").write_text(GOOD)
    run.ok("update", "alice", "--prompt", "You are Alice, brief.", "--draft")
    passed = json.loads(run.ok("eval", "alice", "--suite", "good.yaml", "--json"))
    assert (passed["version"], passed["passed"], passed["failed"]) == (2, 1, 0)
    assert passed["cases"][0]["reply"].startswith("<You are Alice, brief.>")
    script.tag = "BAD "
    failed = run("eval", "alice", "--suite", "good.yaml")
    assert failed.returncode == 1
    assert "0 passed, 1 failed" in failed.stdout and "judge: FAIL: rude" in failed.stdout
    versions = json.loads(run.ok("versions", "alice", "--json"))
    assert versions[0]["eval"]["failed"] == 1 and versions[1]["eval"] is None
    # The gate names the failure; bad suites are clear errors, never tracebacks.
    gated = run("rollout", "start", "alice", "--percent", "10", "--require-eval")
    assert gated.returncode == 1 and "polite: judge: FAIL" in gated.stderr
    (tmp_path / "bad.yaml").write_text("cases: [{name: a, message: m, expect: [{nope: 1}]}]")
    for args, fragment in (
        (["eval", "alice", "--suite", "bad.yaml"], "unknown check 'nope'"),
        (["eval", "nobody", "--suite", "good.yaml"], "Error:"),
        (["eval", "alice", "--suite", "good.yaml", "--version", "9"], "no version 9"),
        (["rollout", "start", "alice", "--percent", "5", "--max-judge-fail-rate", "0.2"],
         "needs --judge"),
        (["rollout", "start", "alice", "--percent", "5", "--judge", "x", "--judge-sample",
          "0"], "judge-sample"),
    ):  # fmt: skip
        done = run(*args)
        assert done.returncode in (1, 2) and fragment in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_replay_with_a_judge_counts_wins_ties_and_losses(cli: tuple[Cli, Script]) -> None:
    run, script = cli
    for user in (1, 2, 3):
        run.ok("chat", str(user), f"question {user}")
    run.ok("update", "alice", "--prompt", "You are Alice, brief.", "--draft")
    tied = json.loads(run.ok("replay", "alice", "--judge", "Polite.", "--json"))
    assert (tied["wins"], tied["ties"], tied["losses"]) == (0, 3, 0)
    assert {c["verdict"] for c in tied["conversations"]} == {"tie"}
    script.tag = "BAD "  # the candidate's answers turn rude; the stored ones were fine
    lost = json.loads(run.ok("replay", "alice", "--judge", "Polite.", "--json"))
    assert (lost["wins"], lost["ties"], lost["losses"]) == (0, 0, 3)
    shown = run.ok("replay", "alice", "--judge", "Polite.")
    assert "0 win(s), 0 tie(s), 3 loss(es)" in shown


def test_apply_runs_the_files_suite_and_gates_the_canary(
    cli: tuple[Cli, Script], tmp_path: Path
) -> None:
    run, script = cli
    (tmp_path / "alice-evals.yaml").write_text(GOOD)
    exported = run.ok("export")
    changed = exported.replace("You are Alice.", "You are Alice, warm.")
    changed = changed.replace("  prompt: |", "  eval: alice-evals.yaml\n  prompt: |")
    (tmp_path / "catalog.yaml").write_text(changed)
    script.tag = "BAD "
    refused = run("apply", "catalog.yaml", "--canary", "20", "--require-eval", "--yes")
    assert refused.returncode == 1 and "failed 1 case" in refused.stderr, refused.stderr
    assert "eval alice: 0 passed, 1 failed" in refused.stdout
    assert [v["version"] for v in json.loads(run.ok("versions", "alice", "--json"))] == [1]
    script.tag = ""
    applied = run.ok("apply", "catalog.yaml", "--canary", "20", "--require-eval", "--yes")
    assert "eval alice: 1 passed, 0 failed" in applied
    versions = json.loads(run.ok("versions", "alice", "--json"))
    assert versions[0]["state"] == "candidate" and versions[0]["eval"]["passed"] == 1
    assert json.loads(run.ok("rollout", "status", "alice", "--json"))["percent"] == 20


def test_an_eval_runs_read_only_tools_and_not_the_others(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from secretaries_api import create_app
    from secretaries_api.services import Services
    from secretaries_core.config import Settings

    token = "t" * 16
    ask = 'TOOLS: [[["look", {"room": "A", "hour": 1}], ["book", {"room": "A", "hour": 1}]]]'
    with http_tool_server() as (url, seen), llm_server() as (llm_url, _script):
        env = {"SECRETARIES_HOME": str(tmp_path), "SECRETARIES_OPENAI_BASE_URL": llm_url}
        services = Services.from_settings(Settings.load(env=env))
        auth = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(services, api_token=token), headers=auth) as client:
            for name, read_only in (("look", True), ("book", False)):
                body: dict[str, Any] = {"name": name, "http": f"{url}/{name}", "schema": SCHEMA,
                                        "read_only": read_only}  # fmt: skip
                assert client.post("/api/tools/", json=body).status_code == 201
            client.post("/api/secretaries", json={
                "name": "alice", "model": "openai/m", "prompt": "A.", "is_default": True,
                "params": {"tools": "look,book"}})  # fmt: skip
            suite = {"cases": [{"name": "tools", "message": ask,
                                "expect": [{"contains": "results:"}]}]}  # fmt: skip
            done = client.post("/api/secretaries/alice/eval", json={"suite": suite, "version": 1})
            assert done.status_code == 200, done.text
            case = done.json()["cases"][0]
            bad = client.post("/api/secretaries/alice/eval", json={"suite": {"cases": []}})
            assert bad.status_code == 422
        services.close()
    assert [s["path"] for s in seen] == ["/look"]  # the side-effecting call never left
    assert case["passed"] and "not run in eval: book is not read-only" in case["reply"]
    assert case["not_run"] == ['book({"room": "A", "hour": 1})']
