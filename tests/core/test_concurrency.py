"""Racing writers: OS processes assigning the same user at once end with one active link."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from sqlalchemy import Engine, func, select

from secretaries_core.catalog.models import AssistantCreate, UserSecretaryLink
from secretaries_core.catalog.registry import SecretaryRegistry

PROCESSES = 8
ROUNDS = 15

WORKER = textwrap.dedent(
    """
    import sys, time
    from secretaries_core.plumbing.db import make_engine
    from secretaries_core.catalog.registry import SecretaryRegistry

    url, start_at, me, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    registry = SecretaryRegistry(make_engine(url))
    registry.get_user(42)  # connect before the start line
    while time.time() < start_at:
        time.sleep(0.001)
    for i in range(rounds):
        registry.assign(42, f"s{(me + i) % 8}")
    print("ok")
    """
)


def _links(engine: Engine) -> tuple[int, int]:
    link = UserSecretaryLink.__table__
    with engine.connect() as conn:
        active = conn.execute(select(func.count()).where(link.c.is_active)).scalar_one()
        total = conn.execute(select(func.count()).select_from(link)).scalar_one()
    return active, total


def test_processes_racing_assign_leave_one_active_link(
    registry: SecretaryRegistry, engine: Engine, db_url: str
) -> None:
    for i in range(8):
        registry.create_secretary(AssistantCreate(name=f"s{i}", model="echo", prompt="p"))
    registry.add_user(42)
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, str(start_at), str(me), str(ROUNDS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(PROCESSES)
    ]
    outcomes = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    for out, err, code in outcomes:
        assert code == 0 and out.strip() == "ok", err
    active, total = _links(engine)
    assert active == 1
    assert total > PROCESSES  # real switches happened, each keeping its history row
    history = registry.history(42)
    assert sum(h.is_active for h in history) == 1 and history[0].is_active


def test_cli_processes_racing_assign(
    registry: SecretaryRegistry, engine: Engine, db_url: str
) -> None:
    for i in range(PROCESSES):
        registry.create_secretary(AssistantCreate(name=f"s{i}", model="echo", prompt="p"))
    registry.add_user(42)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secretaries_cli",
                "--database-url",
                db_url,
                "assign",
                "42",
                f"s{i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert _links(engine) == (1, PROCESSES)
