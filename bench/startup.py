"""CLI start-up, whole process, best of N, vs `python -c "import sqlalchemy"`.

Rows: `--help` (the root's and the heaviest commands'), `list`, `current`, `show` (target
≤ 1.5x the floor), `chat` with the echo model (everything up to the reply), and `bot`
without a token (it must say so in well under a second: nothing heavy is imported before
the check; it exits 1, which is the point).

Run: python -m bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table


def best(cmd: list[str], env: dict[str, str], runs: int, *, check: bool = True) -> float:
    """Fastest wall time of `runs` runs (the least disturbed by the machine)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=check
        )
        times.append(time.perf_counter() - start)
    return min(times)


def run(runs: int) -> list[Row]:
    """--help, list and current vs importing SQLAlchemy."""
    exe = [sys.executable, "-m", "secretaries_cli"]
    with TemporaryDirectory() as home:
        env = {**os.environ, "SECRETARIES_HOME": home}
        env.pop("SECRETARIES_DATABASE_URL", None)
        subprocess.run(
            [*exe, "create", "alice", "--model", "echo", "--prompt", "A", "--default"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run([*exe, "users", "add", "1"], env=env, check=True, stdout=subprocess.DEVNULL)
        assert Path(home, "secretaries.db").exists()
        floor = best([sys.executable, "-c", "import sqlalchemy"], env, runs)
        cases: list[tuple[list[str], bool]] = [
            (["--help"], True),
            (["bot", "--help"], True),
            (["serve", "--help"], True),
            (["users", "list", "--help"], True),
            (["list"], True),
            (["current", "1"], True),
            (["show", "alice"], True),
            (["chat", "1", "hello"], True),
            (["bot"], False),  # no token: exit 1 with its Error: line
        ]
        env_no_token = {k: v for k, v in env.items() if k != "SECRETARIES_TELEGRAM_TOKEN"}
        return [
            Row(
                f"secretaries {' '.join(args)}",
                best([*exe, *args], env_no_token, runs, check=check),
                floor,
                'python -c "import sqlalchemy"',
            )
            for args, check in cases
        ]


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print_table("CLI start-up (wall, whole process, best of runs)", run(args.runs))


if __name__ == "__main__":
    main()
