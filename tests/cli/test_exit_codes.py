"""docs/cli.md's exit-code table, row by row, through the real CLI process."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDS_FOR = {"\\x07": "\x07", "\\x00": "\x00", "\\udc80": "\udc80"}


def _rows() -> list[tuple[str, str, int]]:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    table = text.split("### Exit codes, error by error", 1)[1].split("\n\n")[2]
    rows = []
    for line in table.splitlines()[2:]:
        error, example, code = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((error, example.strip("`"), int(code)))
    return rows


def test_every_row_of_the_exit_code_table(tmp_path: Path) -> None:
    rows = _rows()
    assert len(rows) >= 15
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARIES_")}
    env.update(SECRETARIES_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT))

    def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        # Bytes on the wire: a lone surrogate travels as the bytes Python's own argv
        # decoding turns back into it (surrogateescape), as a shell would pass them.
        raw = [os.fsencode(a) for a in argv]
        return subprocess.run(
            [sys.executable.encode(), b"-m", b"secretaries_cli", *raw],
            env=env, capture_output=True, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    assert run(["create", "alice", "--model", "echo", "--prompt", "A", "--default"]).returncode == 0
    (tmp_path / "catalog.yaml").write_bytes(run(["export"]).stdout.replace(b"A\n", b"B\n"))
    (tmp_path / "bad-suite.yaml").write_text("cases: []")
    (tmp_path / "nul-prompt.txt").write_text("a\x00b")
    for error, example, code in rows:
        argv = shlex.split(example)[1:]
        for shown, real in STANDS_FOR.items():
            argv = [a.replace(shown, real) for a in argv]
        done = run(argv)
        err = done.stderr.decode("utf-8", "replace")
        assert done.returncode == code, (error, example, done.returncode, err)
        assert "Traceback" not in err, (error, err)
        if code != 2 or err.startswith("Error:"):
            assert err.startswith("Error:") and err.count("\n") == 1, (error, err)
        assert "secret@" not in err, (error, err)  # a password is never shown
