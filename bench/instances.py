"""Instance modes: pool memory and lookup time for 1,000 / 10,000 / 100,000 users; eviction cost.

Run: python -m bench.instances [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import uuid
from datetime import timedelta

from bench.common import Row, print_table
from secretaries_core.context import ContextPolicy
from secretaries_core.conversation.instances import (
    InstancePool,
    SecretaryInstance,
    SecretarySnapshot,
)
from secretaries_core.llm.echo import EchoAdapter

SECRETARY = SecretarySnapshot(uuid.UUID(int=1), "alice", "echo", "You are Alice.", {}, 1)
POLICY = ContextPolicy(timedelta(days=7), 100)


def factory(secretary: SecretarySnapshot, user_id: int | None) -> SecretaryInstance:
    """What the orchestrator builds: an echo adapter and the policy."""
    return SecretaryInstance(secretary, EchoAdapter(), POLICY, user_id)


def pool_for(capacity: int) -> InstancePool:
    """A pool with no idle expiry in the way."""
    return InstancePool(factory, capacity=capacity, idle_seconds=3600)


def lookups(pool: InstancePool, users: int, per_user: bool) -> float:
    """Seconds per `get` over `users` distinct users."""
    start = time.perf_counter()
    for user in range(users):
        pool.get(SECRETARY, user if per_user else None)
    return (time.perf_counter() - start) / users


def memory(capacity: int, users: int, per_user: bool) -> tuple[float, int]:
    """Bytes held by the pool after `users` users, and its size."""
    tracemalloc.start()
    pool = pool_for(capacity)
    before = tracemalloc.get_traced_memory()[0]
    for user in range(users):
        pool.get(SECRETARY, user if per_user else None)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used, len(pool)


def run(sizes: list[int]) -> list[Row]:
    """Rows per size: shared and per-user (capacity 1,000), memory in the name, time per get."""
    rows = []
    for users in sizes:
        shared_mem, _ = memory(1000, users, False)
        per_mem, per_size = memory(1000, users, True)
        shared_t = lookups(pool_for(1000), users, False)
        per_t = lookups(pool_for(1000), users, True)
        rows.append(
            Row(
                f"{users:,} users: per-user {per_mem / 1e6:.2f} MB ({per_size:,} inst.)"
                f" vs shared {shared_mem / 1e6:.3f} MB",
                per_t,
                shared_t,
                "shared mode, same users",
            )
        )
    warm = pool_for(1000)
    lookups(warm, 1000, True)
    hit = lookups(warm, 1000, True)
    evicting = pool_for(1000)
    lookups(evicting, 1000, True)
    start = time.perf_counter()
    for user in range(1000, 11_000):  # every get misses, builds, evicts and closes one
        evicting.get(SECRETARY, user)
    evict = (time.perf_counter() - start) / 10_000
    rows.append(Row("pool get with eviction (full, per-user)", evict, hit, "pool hit"))
    return rows


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    print_table("Instance modes", run([int(n) for n in args.sizes.split(",")]))


if __name__ == "__main__":
    main()
