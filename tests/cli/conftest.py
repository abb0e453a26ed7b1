"""CLI fixtures: an in-process runner with separate stdout/stderr and a private data home."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from secretaries_cli.app import app

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point SECRETARIES_HOME at a fresh directory and clear the other settings."""
    home = tmp_path / "home"
    monkeypatch.setenv("SECRETARIES_HOME", str(home))
    for name in ("SECRETARIES_DATABASE_URL", "SECRETARIES_CONTEXT_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def cli(db_url: str) -> Run:
    """Run `secretaries --database-url <db_url> ARGS...` in-process."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, ["--database-url", db_url, *args])

    return run


@pytest.fixture
def cli_default() -> Run:
    """Run `secretaries ARGS...` on the embedded default under the private home."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, list(args))

    return run


def ok(result: Result) -> Result:
    """Assert exit 0 and return the result."""
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def as_json(result: Result) -> Any:
    """Parse stdout, which must be exactly one JSON document."""
    ok(result)
    return json.loads(result.stdout)


def failed(result: Result, code: int, *fragments: str) -> None:
    """Assert an exit code, an `Error:` first line on stderr (for 1 and 3) and no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    if code in (1, 3):
        assert result.stderr.startswith("Error: "), result.stderr
        assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
