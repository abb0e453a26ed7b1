"""`serve` and `worker` refuse a bad configuration before their heavy imports: the real
console entry, `-X importtime` telling what the process loaded before it exited 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("sqlalchemy", "sqlmodel", "fastapi", "uvicorn", "redis", "aiohttp", "pydantic")


def _refused(tmp_path: Path, args: list[str], **env: str) -> tuple[str, set[str]]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    full.update(SECRETARIES_HOME=str(tmp_path), **env)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "secretaries_cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    loaded = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line}
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    return errors[0], {m for m in HEAVY if m in loaded}


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["serve"], {}, "set SECRETARIES_API_TOKEN"),
        (["serve"], {"SECRETARIES_API_TOKEN": "short"}, "use at least 8"),
        (["serve", "--no-auth", "--host", "0.0.0.0"], {}, "only allowed on a loopback"),
        (["worker"], {}, "the queue needs Redis: set SECRETARIES_QUEUE_URL"),
    ],
)
def test_a_bad_configuration_is_refused_before_heavy_imports(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    error, heavy = _refused(tmp_path, args, **env)
    assert said in error
    assert heavy == set(), f"{args} loaded {sorted(heavy)} before refusing"
