"""docs/cli.md has a section for every command the CLI has."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from secretaries_cli.app import app

ROOT = Path(__file__).resolve().parent.parent


def _command_paths(command: Any, prefix: str = "") -> list[str]:
    if hasattr(command, "commands"):
        paths: list[str] = []
        for name, sub in command.commands.items():
            paths += _command_paths(sub, f"{prefix} {name}".strip())
        return paths
    return [prefix]


def test_every_command_has_a_section_in_cli_md() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = {line.strip("# `").strip() for line in text.splitlines() if line.startswith("### ")}
    paths = _command_paths(typer.main.get_command(app))
    assert len(paths) >= 17
    missing = [p for p in paths if f"secretaries {p}" not in headings]
    assert missing == [], f"docs/cli.md lacks a '### `secretaries …`' section for: {missing}"


def _commands(command: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if hasattr(command, "commands"):
        found: list[tuple[str, Any]] = []
        for name, sub in command.commands.items():
            found += _commands(sub, f"{prefix} {name}".strip())
        return found
    return [(prefix, command)]


def test_every_command_has_an_example_and_help_on_every_argument() -> None:
    no_example, no_help = [], []
    for path, command in _commands(typer.main.get_command(app)):
        if "Example: secretaries " not in (command.help or "") and "Example: SECRETARIES_" not in (
            command.help or ""
        ):
            no_example.append(path)
        no_help += [f"{path} {p.name}" for p in command.params if not getattr(p, "help", None)]
    assert no_example == [] and no_help == [], (no_example, no_help)


def test_docs_exist() -> None:
    for name in (
        "architecture.md",
        "cli.md",
        "operations.md",
        "performance.md",
        "telegram.md",
        "api.md",
    ):
        assert (ROOT / "docs" / name).is_file(), name


def test_the_readme_session_runs_as_written(tmp_path: Path) -> None:
    """Every `$ secretaries …` line of the README, in order, on a fresh embedded default."""
    import shlex
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    session = text.split("```text", 1)[1].split("```", 1)[0]
    commands = [line[2:] for line in session.splitlines() if line.startswith("$ secretaries ")]
    assert len(commands) >= 6
    env = {**os.environ, "SECRETARIES_HOME": str(tmp_path / "home")}
    env.pop("SECRETARIES_DATABASE_URL", None)
    env.pop("SECRETARIES_CONTEXT_URL", None)
    outputs = []
    for command in commands:
        argv = shlex.split(command)[1:]
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", *argv],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    # What the README shows for the last command is what it prints.
    assert "Linked 2 user(s) to alice." in outputs[-1]


def test_the_release_workflow_runs_as_written(tmp_path: Path) -> None:
    """Every `secretaries …` line of operations.md's release workflow, in order."""
    import shlex
    import subprocess
    import sys

    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = text.split("## Releasing a secretary", 1)[1].split("```bash", 1)[1].split("```")[0]
    commands = [line for line in block.splitlines() if line.startswith("secretaries ")]
    assert len(commands) >= 15
    env = {**os.environ, "SECRETARIES_HOME": str(tmp_path / "home")}
    for name in ("SECRETARIES_DATABASE_URL", "SECRETARIES_CONTEXT_URL"):
        env.pop(name, None)
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "secretaries_cli", *shlex.split(command)[1:]],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "prompt: |" in (tmp_path / "catalog.yaml").read_text()


def test_the_quickstart_echoes_commands_that_can_be_pasted_back() -> None:
    import shlex
    import subprocess

    script = (ROOT / "scripts" / "quickstart").read_text(encoding="utf-8")
    shown = next(line for line in script.splitlines() if line.startswith("shown()"))
    argv = ["create", "alice", "--prompt", "You are Alice, a cheerful secretary.", "it's"]
    echo = f'{shown}\nfor a in "$@"; do shown "$a"; done'
    done = subprocess.run(["bash", "-c", echo, "bash", *argv], capture_output=True, text=True)
    assert shlex.split(done.stdout) == argv


def test_every_install_hint_names_our_distribution() -> None:
    """`secretaries` on PyPI is another project: every hint says `secretaries-platform`."""
    import re

    wrong = re.compile(r"(?<![\w-])secretaries\[(api|telegram|tokens|postgres|test)\]")
    places = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for package in (
        "secretaries_core",
        "secretaries_cli",
        "secretaries_api",
        "secretaries_telegram",
    ):
        places += sorted((ROOT / package).rglob("*.py"))
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in places
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if wrong.search(line) or "pip install secretaries " in line
    ]
    assert found == []
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'name = "secretaries-platform"' in text


def test_the_readme_library_snippet_runs_as_a_script(tmp_path: Path) -> None:
    """The README's Python block is a complete script (run on a fresh embedded default)."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = text.split("```python", 1)[1].split("```", 1)[0]
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env["SECRETARIES_HOME"] = str(tmp_path / "home")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "secretaries_cli",
            "create",
            "alice",
            "--model",
            "echo",
            "--prompt",
            "You are Alice.",
            "--default",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "(alice v1)" in done.stdout and "tell me more" in done.stdout


def _api_commands() -> tuple[str, list[tuple[str, str]]]:
    """docs/api.md's endpoint block: its variables line and each (command, its comments)."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    block = text.split("## Endpoints", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    setup, commands, current = "", [], ["", ""]
    for raw in block.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            if raw.startswith(" ") and commands:  # a note on the command above
                commands[-1] = (commands[-1][0], commands[-1][1] + stripped)
            continue
        code, _, comment = raw.partition("  #")
        line = code.strip()
        if line.startswith("API="):
            setup = line
            continue
        if not line:
            continue
        current[0] += " " + line.rstrip("\\").strip()
        current[1] += comment
        if not line.endswith("\\"):
            commands.append((current[0].strip(), current[1]))
            current = ["", ""]
    return setup, commands


def test_the_api_doc_block_runs_in_order(tmp_path: Path, redis_url: str) -> None:
    """Every curl of docs/api.md, in order, against a fresh real server with a queue."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.servers import free_port

    setup, commands = _api_commands()
    assert setup and len(commands) >= 30
    port, token = free_port(), "doc-token-" + "x" * 24
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(
        SECRETARIES_HOME=str(tmp_path / "home"),
        SECRETARIES_API_TOKEN=token,
        SECRETARIES_QUEUE_URL=redis_url,
        SECRETARIES_REDIS_PREFIX=f"doc{port}:",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "secretaries_cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.1)
        setup = setup.replace("8000", str(port))
        for command, notes in commands:
            assert command.startswith("curl "), command
            probe = command.replace("curl ", "curl -sS -o /dev/null -w '%{http_code}' ", 1)
            done = subprocess.run(
                ["bash", "-c", f"{setup}; {probe}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            status = int(done.stdout or 0)
            allowed = status < 300 or (status == 404 and "404" in notes)
            assert allowed, (command, status, done.stderr)
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_every_metric_is_in_the_metrics_reference() -> None:
    from secretaries_core.plumbing.metrics import Metrics

    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    for family in Metrics().registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        assert f"`{family.name}{suffix}`" in text, family.name
