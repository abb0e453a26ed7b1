"""The distribution as someone outside the checkout gets it: `python -m build` makes a
wheel and an sdist that `twine check` accepts; the wheel installs into a fresh venv,
outside the checkout, and runs `secretaries --version` and the README's session."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]
    assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    return done  # type: ignore[no-any-return]


@pytest.mark.long
def test_the_built_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    checked = _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)])
    assert checked.stdout.count("PASSED") == 2

    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheels[0])])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECRETARIES_", "PYTHON"))}
    env["SECRETARIES_HOME"] = str(tmp_path / "home")
    secretaries = str(fresh / "bin" / "secretaries")
    version = _run([secretaries, "--version"], cwd=outside, env=env)
    assert version.stdout.startswith("secretaries ")
    # Installed, not imported from the checkout.
    where = _run([str(python), "-c", "import secretaries_core; print(secretaries_core.__file__)"],
                 cwd=outside, env=env)  # fmt: skip
    assert str(fresh) in where.stdout and str(ROOT) not in where.stdout

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    session = text.split("```text", 1)[1].split("```", 1)[0]
    commands = [line[2:] for line in session.splitlines() if line.startswith("$ secretaries ")]
    outputs = [
        _run([secretaries, *shlex.split(c)[1:]], cwd=outside, env=env).stdout for c in commands
    ]
    assert "Linked 2 user(s) to alice." in outputs[-1]
