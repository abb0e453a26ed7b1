"""Every benchmark runs once on a tiny data set so that none of them can rot."""

from __future__ import annotations

import pytest

from bench import migrate_users


def test_migrate_users_bench_runs(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARIES_BENCH_POSTGRES_URL", pg_admin_url)
    rows = migrate_users.run(users=300, batch_size=70, backends=["sqlite", "postgresql"])
    assert [r.name.split(":")[0] for r in rows] == ["sqlite", "postgresql"]
    assert all(r.ours > 0 and r.baseline > 0 for r in rows)
