"""Secretary resolution: cached vs a dict with a TTL check; uncached vs one hand-written query.

Run: python -m bench.resolution [--lookups 200000] [--queries 3000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.common import Row, print_table
from secretaries_core.catalog.models import AssistantCreate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.users_csv import UserRow
from secretaries_core.config import Settings
from secretaries_core.context import SqlContextStore
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

USERS = 1000
HAND_WRITTEN = """
SELECT u.id, u.username, a.id, a.name, a.model, a.prompt, a.params, a.version, a.is_active,
       d.id, d.name, d.model, d.prompt, d.params, d.version
FROM telegramuser u
LEFT JOIN usersecretarylink l ON l.user_id = u.id AND l.is_active
LEFT JOIN assistant a ON a.id = l.secretary_id
LEFT JOIN assistant d ON d.is_default AND d.is_active
WHERE u.telegram_id = ?
"""


def per_call(fn: object, count: int) -> float:
    """Mean seconds per call of fn(i)."""
    call = fn  # type: ignore[assignment]
    start = time.perf_counter()
    for i in range(count):
        call(i)  # type: ignore[operator]
    return (time.perf_counter() - start) / count


def run(lookups: int, queries: int) -> list[Row]:
    """Cached and uncached rows."""
    with TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'res.db'}")
        schema.upgrade(engine)
        registry = SecretaryRegistry(engine)
        registry.create_secretary(
            AssistantCreate(name="alice", model="echo", prompt="A", is_default=True)
        )
        registry.create_secretary(AssistantCreate(name="bob", model="echo", prompt="B"))
        registry.import_users([UserRow(1000 + i, None) for i in range(USERS)])
        for i in range(0, USERS, 2):
            registry.assign(1000 + i, "bob")
        settings = replace(Settings.load(env={}), resolution_ttl_seconds=3600)
        orch = Orchestrator(registry, SqlContextStore(engine, settings.context_policy), settings)
        for i in range(USERS):
            orch.resolve(1000 + i)  # warm the cache
        floor: dict[int, tuple[float, object]] = {
            1000 + i: (time.monotonic() + 3600, orch.cache.get(1000 + i)) for i in range(USERS)
        }

        def dict_floor(i: int) -> object:
            entry = floor.get(1000 + i % USERS)
            return entry[1] if entry is not None and time.monotonic() < entry[0] else None

        rows = [
            Row(
                "resolution, cached: ResolutionCache.get",
                per_call(lambda i: orch.cache.get(1000 + i % USERS), lookups),
                per_call(dict_floor, lookups),
                "dict + monotonic TTL check",
            ),
            Row(
                "resolution, cached: Orchestrator.resolve (+metrics)",
                per_call(lambda i: orch.resolve(1000 + i % USERS), lookups),
                per_call(dict_floor, lookups),
                "dict + monotonic TTL check",
            ),
        ]
        raw = engine.raw_connection()
        cursor = raw.cursor()

        def by_hand(i: int) -> object:
            cursor.execute(HAND_WRITTEN, (1000 + i % USERS,))
            return cursor.fetchall()

        rows.append(
            Row(
                "resolution, uncached: SecretaryRegistry.resolve",
                per_call(lambda i: registry.resolve(1000 + i % USERS), queries),
                per_call(by_hand, queries),
                "one hand-written join (sqlite3)",
            )
        )
        raw.close()
        orch.close()
        engine.dispose()
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=3000)
    args = parser.parse_args()
    print_table("Secretary resolution", run(args.lookups, args.queries))


if __name__ == "__main__":
    main()
