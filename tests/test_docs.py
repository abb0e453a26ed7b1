"""docs/cli.md has a section for every command the CLI has."""

from __future__ import annotations

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


def test_docs_exist() -> None:
    for name in ("architecture.md", "cli.md", "operations.md", "performance.md"):
        assert (ROOT / "docs" / name).is_file(), name
