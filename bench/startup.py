"""CLI start-up, whole process, best of N, vs `python -c "import sqlalchemy"`.

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


def best(cmd: list[str], env: dict[str, str], runs: int) -> float:
    """Fastest wall time of `runs` runs (the least disturbed by the machine)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
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
        return [
            Row(
                f"secretaries {' '.join(args)}",
                best([*exe, *args], env, runs),
                floor,
                'python -c "import sqlalchemy"',
            )
            for args in (["--help"], ["list"], ["current", "1"])
        ]


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print_table("CLI start-up (wall, whole process, best of runs)", run(args.runs))


if __name__ == "__main__":
    main()
