"""The console script builds only the invoked command's branch of the Typer tree, and says
exactly what the whole tree says: each case runs the real `secretaries` process and the
whole app in-process on the same database, and compares stdout and exit codes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from secretaries_cli.app import app, only_invoked

CONSOLE = "import sys; from secretaries_cli.launch import main; sys.argv[0] = 'secretaries'; main()"


def _branch(argv: list[str]) -> tuple[list[str], list[str]]:
    """(commands, groups) left in a copy of the root app by `only_invoked(argv)`."""
    root = copy.copy(app)
    only_invoked(root, argv)
    return (
        [c.name or c.callback.__name__ for c in root.registered_commands],  # type: ignore[union-attr]
        [str(g.name) for g in root.registered_groups],
    )


def test_only_the_invoked_command_or_group_is_kept() -> None:
    assert _branch(["versions", "alice"]) == (["versions"], [])
    assert _branch(["--database-url", "sqlite://", "rollout", "status", "a"]) == ([], ["rollout"])
    assert _branch(["--context-url=redis://x", "users", "list"]) == ([], ["users"])
    every = (len(app.registered_commands), len(app.registered_groups))
    # Uncertain: the whole tree (root help, a typo's suggestions, a dangling option).
    for argv in ([], ["--help"], ["--version"], ["nosuch"], ["--database-url"], ["-x", "list"]):
        commands, groups = _branch(argv)
        assert (len(commands), len(groups)) == every, argv


def test_completion_keeps_the_whole_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_SECRETARIES_COMPLETE", "complete_bash")
    commands, groups = _branch(["versions"])
    every = (len(app.registered_commands), len(app.registered_groups))
    assert (len(commands), len(groups)) == every


@pytest.mark.parametrize(
    "args",
    [
        ["versions", "alice"],
        ["versions", "alice", "--json"],
        ["versions", "nobody"],
        ["rollout", "status", "alice", "--json"],
        ["users", "list", "--json"],
        ["users", "list", "--bogus"],
        ["nosuch"],
    ],
)
def test_the_console_says_what_the_whole_tree_says(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    runner = CliRunner()
    for setup in (
        ["db", "upgrade"],
        ["create", "alice", "--model", "echo", "--prompt", "A", "--default"],
        ["update", "alice", "--prompt", "A, briefly."],
        ["users", "add", "7"],
    ):
        assert runner.invoke(app, ["--database-url", url, *setup]).exit_code == 0
    whole = runner.invoke(app, ["--database-url", url, *args])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(SECRETARIES_HOME=str(tmp_path), COLUMNS="80", TERM="dumb")
    console = subprocess.run(
        [sys.executable, "-c", CONSOLE, "--database-url", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert console.returncode == whole.exit_code, console.stderr[-2000:]
    assert console.stdout == whole.stdout
    if whole.exit_code:
        said = [line for line in console.stderr.splitlines() if line.strip()]
        assert said, "a refusal says why"
