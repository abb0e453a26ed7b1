"""The instance pool: capacity, idle expiry, close() on eviction, rebuild on a new version."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from secretaries_core.context import ContextPolicy
from secretaries_core.conversation.instances import (
    InstancePool,
    SecretaryInstance,
    SecretarySnapshot,
)
from secretaries_core.llm.echo import EchoAdapter
from secretaries_core.plumbing.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sec(n: int, version: int = 1) -> SecretarySnapshot:
    return SecretarySnapshot(uuid.UUID(int=n), f"s{n}", "echo", "p", {}, version)


def make_pool(
    capacity: int = 3, idle: float = 60
) -> tuple[InstancePool, Clock, list[SecretaryInstance]]:
    clock = Clock()
    built: list[SecretaryInstance] = []

    def factory(snapshot: SecretarySnapshot, user_id: int | None) -> SecretaryInstance:
        instance = SecretaryInstance(
            snapshot, EchoAdapter(), ContextPolicy(timedelta(hours=1), 10), user_id
        )
        built.append(instance)
        return instance

    return (
        InstancePool(factory, capacity=capacity, idle_seconds=idle, metrics=Metrics(), clock=clock),
        clock,
        built,
    )


@pytest.mark.parametrize("per_user", [False, True])
def test_hits_and_capacity_eviction_closes(per_user: bool) -> None:
    pool, _clock, built = make_pool(capacity=3)
    user = (lambda u: u) if per_user else (lambda _u: None)
    first = pool.get(sec(1), user(10))
    assert pool.get(sec(1), user(10)) is first
    if per_user:
        assert pool.get(sec(1), user(11)) is not first  # another user, another instance
    else:
        assert pool.get(sec(1), user(11)) is first  # shared across users
    for n in range(2, 6):
        pool.get(sec(n), user(10))
    assert len(pool) == 3
    assert first.closed
    assert pool.metrics.pool_evictions.labels(reason="capacity")._value.get() >= 1
    assert sum(i.closed for i in built) == len(built) - 3


def test_idle_instances_expire() -> None:
    pool, clock, _built = make_pool(capacity=10, idle=60)
    old = pool.get(sec(1), None)
    clock.now += 30
    kept = pool.get(sec(2), None)
    clock.now += 45  # sec(1) idle 75 s, sec(2) idle 45 s
    assert pool.sweep() == 1
    assert old.closed and not kept.closed
    clock.now += 61
    fresh = pool.get(sec(3), None)  # expiry also happens on the way in
    assert kept.closed and not fresh.closed and len(pool) == 1


def test_new_version_rebuilds_and_closes_old() -> None:
    pool, _clock, _built = make_pool()
    v1_a, v1_b = pool.get(sec(1, 1), 7), pool.get(sec(1, 1), 8)
    v2 = pool.get(sec(1, 2), 7)
    assert v2 is not v1_a and v2.secretary.version == 2
    assert v1_a.closed and v1_b.closed
    assert pool.evict_secretary(uuid.UUID(int=1)) == 1 and v2.closed


def test_metrics_and_thread_safety() -> None:
    pool, _clock, built = make_pool(capacity=50)
    threads = [
        threading.Thread(target=lambda: [pool.get(sec(n % 5), None) for n in range(500)])
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 5 and len(pool) == 5
    text = pool.metrics.exposition().decode()
    assert "secretaries_pool_hits_total 3995.0" in text
    assert "secretaries_pool_misses_total 5.0" in text
