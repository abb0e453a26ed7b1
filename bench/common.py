"""Shared helpers for benchmarks: databases to run on, timing and the result table."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from sqlalchemy import create_engine, text

from tests.servers import postgres_server


@dataclass
class Row:
    """One line of a benchmark table: ours vs the baseline, in seconds."""

    name: str
    ours: float
    baseline: float
    baseline_name: str

    @property
    def ratio(self) -> float:
        """How many times the baseline's time ours takes (lower is better, 1.0 = equal)."""
        return self.ours / self.baseline if self.baseline else float("inf")


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def seconds(value: float) -> str:
    """A duration with a unit that keeps three significant places."""
    if value >= 1:
        return f"{value:.3f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3f} ms"
    if value >= 1e-5:
        return f"{value * 1e6:.1f} us"
    return f"{value * 1e6:.2f} us"


def print_table(title: str, rows: list[Row]) -> None:
    """Print rows as a fixed-width table."""
    width = max([44, *(len(r.name) for r in rows)])
    print(f"\n{title}")
    print(f"{'case':<{width}} {'ours':>11} {'baseline':>11} {'ratio':>7}  baseline is")
    for r in rows:
        print(
            f"{r.name:<{width}} {seconds(r.ours):>11} {seconds(r.baseline):>11} "
            f"{r.ratio:>6.2f}x  {r.baseline_name}"
        )


@contextmanager
def database_urls(backends: list[str]) -> Iterator[dict[str, str]]:
    """Fresh database URLs per backend: SQLite in a temp dir, PostgreSQL private or from env."""
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        if "sqlite" in backends:
            tmp = stack.enter_context(TemporaryDirectory(prefix="secretaries-bench-"))
            urls["sqlite"] = f"sqlite:///{Path(tmp) / 'bench.db'}"
        if "postgresql" in backends:
            admin = os.environ.get("SECRETARIES_BENCH_POSTGRES_URL") or stack.enter_context(
                postgres_server()
            )
            engine = create_engine(admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS secretaries_bench WITH (FORCE)"))
                conn.execute(text("CREATE DATABASE secretaries_bench"))
            urls["postgresql"] = engine.url.set(database="secretaries_bench").render_as_string(
                hide_password=False
            )
            stack.callback(engine.dispose)
        yield urls
