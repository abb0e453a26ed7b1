"""migrate-users on 10,000 users: counts, idempotency, --from, dry run, resuming after a kill."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import Engine, func, select

from secretaries_core.catalog.models import AssistantCreate, UserSecretaryLink
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.users_csv import UserRow
from secretaries_core.errors import Conflict, InactiveSecretary, NoDefaultSecretary
from tests.conftest import snapshot

N = 10_000


def _seed(registry: SecretaryRegistry) -> None:
    for name, default in [("alice", True), ("bob", False), ("carol", False)]:
        registry.create_secretary(
            AssistantCreate(name=name, model="echo", prompt=name, is_default=default)
        )
    registry.import_users([UserRow(100 + i, None) for i in range(N)])


def _active_counts(engine: Engine) -> tuple[int, int, int]:
    """(active links, users with an active link, most active links of one user)."""
    link = UserSecretaryLink.__table__
    with engine.connect() as conn:
        active = conn.execute(select(func.count()).where(link.c.is_active)).scalar_one()
        per_user = (
            select(link.c.user_id, func.count().label("n"))
            .where(link.c.is_active)
            .group_by(link.c.user_id)
            .subquery()
        )
        users, top = conn.execute(select(func.count(), func.max(per_user.c.n))).one()
    return active, users, top or 0


@pytest.fixture
def seeded(registry: SecretaryRegistry) -> SecretaryRegistry:
    _seed(registry)
    return registry


def test_dry_run_counts_and_writes_nothing(seeded: SecretaryRegistry, engine: Engine) -> None:
    seeded.assign(100, "bob")
    before = snapshot(engine)
    result = seeded.migrate_users(dry_run=True)
    assert (result.secretary, result.migrated, result.dry_run) == ("alice", N - 1, True)
    assert seeded.migrate_users(from_="bob", to="carol", dry_run=True).migrated == 1
    assert snapshot(engine) == before


def test_migrate_counts_idempotent_and_from(seeded: SecretaryRegistry, engine: Engine) -> None:
    seeded.assign(100, "bob")
    seeded.assign(101, "bob")
    seen: list[tuple[int, int]] = []
    result = seeded.migrate_users(batch_size=777, progress=lambda d, t: seen.append((d, t)))
    assert result.migrated == N - 2 and result.secretary == "alice" and not result.dry_run
    assert seen[0] == (0, N - 2) and seen[-1] == (N - 2, N - 2) and len(seen) > N // 777
    assert _active_counts(engine) == (N, N, 1)
    assert seeded.migrate_users().migrated == 0
    assert _active_counts(engine) == (N, N, 1)

    moved = seeded.migrate_users(from_="bob", to="carol", batch_size=1)
    assert moved.migrated == 2
    assert [h.secretary for h in seeded.history(100)] == ["carol", "bob"]
    assert seeded.history(100)[1].is_active is False
    moved = seeded.migrate_users(from_="alice", to="bob", batch_size=3000)
    assert moved.migrated == N - 2
    assert _active_counts(engine) == (N, N, 1)
    assert {s.name: s.users for s in seeded.list_secretaries()} == {
        "alice": 0,
        "bob": N - 2,
        "carol": 2,
    }
    assert seeded.migrate_users(from_="alice", to="bob").migrated == 0


def test_refusals_change_nothing(registry: SecretaryRegistry, engine: Engine) -> None:
    registry.create_secretary(AssistantCreate(name="bob", model="echo", prompt="b"))
    registry.add_user(1)
    before = snapshot(engine)
    with pytest.raises(NoDefaultSecretary):
        registry.migrate_users()
    with pytest.raises(Conflict):
        registry.migrate_users(to="bob", from_="bob")
    assert snapshot(engine) == before
    registry.deactivate("bob")
    before = snapshot(engine)
    with pytest.raises(InactiveSecretary):
        registry.migrate_users(to="bob")
    assert snapshot(engine) == before


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from secretaries_core.plumbing.db import make_engine
    from secretaries_core.catalog.registry import SecretaryRegistry

    def die_after_first_batch(done, total):
        if done > 0:
            os.kill(os.getpid(), signal.SIGKILL)

    registry = SecretaryRegistry(make_engine(sys.argv[1]))
    registry.migrate_users(batch_size=500, progress=die_after_first_batch)
    """
)


def test_killed_run_is_finished_by_a_second_run(
    seeded: SecretaryRegistry, engine: Engine, db_url: str
) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLER, db_url], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    partial = _active_counts(engine)
    assert partial == (500, 500, 1)
    result = seeded.migrate_users(batch_size=500)
    assert result.migrated == N - 500
    assert _active_counts(engine) == (N, N, 1)
