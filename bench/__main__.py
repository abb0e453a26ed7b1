"""Run every benchmark and print one table: `python -m bench [--quick]` (or scripts/bench).

Each row is this project next to a baseline measured in the same run; ratio = ours / baseline
(time), so below 1.0 is faster than the baseline.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from bench import (
    api,
    budget_usage,
    context_redis,
    context_sql,
    instances,
    message_path,
    migrate_users,
    orchestrator,
    resolution,
    startup,
    telegram,
    tool_call,
)
from bench.common import Row, print_table


def main() -> None:
    """Run the suite at full (default) or quick sizes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a sanity run")
    args = parser.parse_args()
    q = args.quick
    started = time.perf_counter()
    sections: list[tuple[str, list[Row]]] = [
        (
            "resolution",
            resolution.run(lookups=20_000 if q else 300_000, queries=300 if q else 3000),
        ),
        (
            "embedded store",
            context_sql.run(ops=300 if q else 3000, contexts=20_000 if q else 200_000),
        ),
        (
            "redis store",
            context_redis.run(contexts=100_000 if q else 1_000_000, appends=2000 if q else 20_000),
        ),
        (
            "orchestrator",
            orchestrator.run(messages=300 if q else 3000, users=10_000 if q else 100_000),
        ),
        (
            "message path",
            message_path.run(users=200 if q else 1000, latency=1.0),
        ),
        (
            "token budget, usage and quotas",
            budget_usage.run(messages=200 if q else 600),
        ),
        (
            "migrate-users",
            migrate_users.run(
                users=100_000 if q else 1_000_000,
                batch_size=10_000,
                backends=["sqlite", "postgresql"],
            ),
        ),
        ("instances", instances.run([1000, 10_000] if q else [1000, 10_000, 100_000])),
        ("cli start-up", startup.run(runs=3 if q else 5)),
        ("rest api", api.run(clients=50, seconds=3 if q else 10, users=1000)),
        ("telegram", telegram.run(messages=5 if q else 10, chats=200 if q else 600)),
        ("tools", tool_call.run(calls=50 if q else 300)[0]),
    ]
    rows = [
        Row(f"[{name}] {row.name}", row.ours, row.baseline, row.baseline_name)
        for name, section in sections
        for row in section
    ]
    print_table(
        f"secretaries benchmarks — Python {platform.python_version()}, {platform.machine()}, "
        f"{time.perf_counter() - started:.0f} s",
        rows,
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
