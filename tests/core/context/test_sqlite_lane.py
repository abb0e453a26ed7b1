"""The embedded store's driver-level lane: same rows as Core, no loop stalls, a bounded WAL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from secretaries_core.context import ContextPolicy, Message, SqlContextStore
from secretaries_core.context.sql_tables import MESSAGE_TABLE
from secretaries_core.errors import BackendUnavailable
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine

SEC = uuid.UUID(int=42)
POLICY = ContextPolicy(timedelta(hours=1), 100)
HOSTILE = "na\u00efve \u2018quotes\u2019 \x00 nul, emoji 🦊, SQL '); DROP TABLE context_message; --"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'lane.db'}")
    schema.upgrade(made)
    yield made
    made.dispose()


def _core_only(engine: Engine) -> SqlContextStore:
    store = SqlContextStore(engine, POLICY)
    assert store._lane is not None  # a file: the lane is on
    store._lane.close()
    store._lane = None
    return store


def _turn(i: int, at: datetime) -> list[tuple[int, uuid.UUID, Message]]:
    return [
        (7, SEC, Message("user", f"{HOSTILE} {i}", at, {"turn": f"t{i}"})),
        (7, SEC, Message("assistant", f"answer {i}", at + timedelta(seconds=1), {"version": 2})),
    ]


def test_lane_and_core_read_each_others_rows_exactly(engine: Engine) -> None:
    lane = SqlContextStore(engine, POLICY)
    core = _core_only(engine)
    # A whole second (no microseconds) and a far-off zone: both are stored as UTC stamps.
    on_the_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    elsewhere = datetime(2026, 1, 2, 9, 4, 5, 123456, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    lane.append_many(_turn(1, on_the_second))
    core.append_many(_turn(2, elsewhere))
    lane.append_many(_turn(3, on_the_second))
    by_lane, by_core = lane.read(7, SEC), core.read(7, SEC)
    assert by_lane == by_core
    assert [m.content for m in by_lane][::2] == [f"{HOSTILE} {i}" for i in (1, 2, 3)]
    assert by_lane[2].at == elsewhere and by_lane[2].at.tzinfo == UTC
    assert by_lane[0].at == on_the_second
    assert by_lane[1].metadata == {"version": 2}
    # Core's typed columns decode what the lane wrote.
    with engine.connect() as conn:
        stamps = [row.created_at for row in conn.execute(select(MESSAGE_TABLE))]
    assert stamps[0] == on_the_second and all(s.tzinfo == UTC for s in stamps)
    lane.close()


def test_the_cap_and_a_redelivered_update_hold_on_the_lane(engine: Engine) -> None:
    store = SqlContextStore(engine, ContextPolicy(timedelta(hours=1), 5))
    at = datetime.now(UTC)
    for i in range(4):
        store.append_many(_turn(i, at))
    assert [m.content for m in store.read(7, SEC)] == [
        "answer 1",
        f"{HOSTILE} 2",
        "answer 2",
        f"{HOSTILE} 3",
        "answer 3",
    ]
    queued = [
        (7, SEC, Message("user", "queued", at, {"update_id": 991})),
        (7, SEC, Message("assistant", "once", at, {"version": 1})),
    ]
    assert store.append_many(queued) == 2
    assert store.append_many(queued) == 0  # the same update again: not doubled
    assert [m.content for m in store.read(7, SEC)][-2:] == ["queued", "once"]
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT message_count FROM conversation_context").scalar()
    assert count == 5
    store.close()


def test_a_held_write_lock_never_stalls_the_loop(engine: Engine, tmp_path: Path) -> None:
    """Another process holds the write lock for 1.5 s: the loop keeps ticking, reads answer
    at once, and the write lands once the lock is free."""
    store = SqlContextStore(engine, POLICY)
    store.append_many(_turn(0, datetime.now(UTC)))
    holder = sqlite3.connect(tmp_path / "lane.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def scenario() -> tuple[float, float, int]:
        gaps: list[float] = []

        async def tick() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        asyncio.get_running_loop().call_later(1.5, holder.execute, "COMMIT")
        started = time.perf_counter()
        read = await store.aread(7, SEC)
        read_took = time.perf_counter() - started
        await store.aappend_many(_turn(1, datetime.now(UTC)))
        wrote_after = time.perf_counter() - started
        ticker.cancel()
        assert len(read) == 2
        return read_took, max(gaps), int(wrote_after * 1000)

    # Every write goes inline first (the checkpointing write is not due in this test).
    read_took, worst_gap, wrote_ms = asyncio.run(scenario())
    assert read_took < 0.2  # WAL: a reader never waits for the writer
    assert wrote_ms >= 1400  # the write waited for the lock (on a thread) ...
    assert worst_gap < 0.3  # ... while the loop kept running
    assert len(store.read(7, SEC)) == 4
    holder.close()
    store.close()


def test_inline_writes_keep_the_wal_bounded(engine: Engine, tmp_path: Path) -> None:
    """No-wait connections never checkpoint; every CHECKPOINT_EVERY-th commit has one run."""
    store = SqlContextStore(engine, ContextPolicy(timedelta(hours=1), 10))
    big = "x" * 8000

    async def write() -> None:
        at = datetime.now(UTC)
        for i in range(1500):
            await store.aappend_many(
                [
                    (i % 50, SEC, Message("user", big, at)),
                    (i % 50, SEC, Message("assistant", big, at)),
                ]
            )

    asyncio.run(write())
    wal = tmp_path / "lane.db-wal"
    # Unchecked, 1,500 turns of 16 KB would leave a WAL of ~30 MB.
    assert wal.stat().st_size < 12 * 1024 * 1024
    assert sum(1 for _ in store.iter_contexts()) == 50
    store.close()


def test_a_broken_database_is_backend_unavailable_and_the_store_recovers(
    engine: Engine, tmp_path: Path
) -> None:
    store = SqlContextStore(engine, POLICY)
    store.append_many(_turn(0, datetime.now(UTC)))
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE context_message RENAME TO parked")
    with pytest.raises(BackendUnavailable, match="no such table"):
        store.read(7, SEC)
    with pytest.raises(BackendUnavailable, match="no such table"):
        asyncio.run(store.aappend_many(_turn(1, datetime.now(UTC))))
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE parked RENAME TO context_message")
    store.append_many(_turn(2, datetime.now(UTC)))
    assert [m.content for m in store.read(7, SEC)][-1] == "answer 2"
    store.close()


def test_an_in_memory_database_keeps_the_core_path() -> None:
    engine = make_engine("sqlite://")
    schema.upgrade(engine)
    store = SqlContextStore(engine, POLICY)
    assert store._lane is None
    store.append_many(_turn(0, datetime.now(UTC)))
    assert len(store.read(7, SEC)) == 2
    engine.dispose()


def _statements(store: SqlContextStore) -> list[str]:
    """Every statement the store's lane connections run from now on."""
    seen: list[str] = []
    lane = store._lane
    assert lane is not None
    opened = lane._open

    def traced(wait: bool) -> sqlite3.Connection:
        conn = opened(wait)
        conn.set_trace_callback(seen.append)
        return conn

    lane.close()
    lane._closed = False
    lane._open = traced  # type: ignore[method-assign]
    return seen


def test_a_known_context_is_read_with_one_small_query(engine: Engine) -> None:
    store = SqlContextStore(engine, POLICY)
    for i in range(30):
        store.append_many(_turn(i, datetime.now(UTC)))
    seen = _statements(store)
    first = store.read(7, SEC)
    assert len(first) == 60
    seen.clear()
    again = store.read(7, SEC)
    assert again == first
    assert len(seen) == 1 and seen[0].startswith("SELECT c.id, c.message_count")
    # Its own write keeps it known: the next read is one small query again.
    store.append_many(_turn(30, datetime.now(UTC)))
    seen.clear()
    assert store.read(7, SEC)[-1].content == "answer 30"
    assert len(seen) == 1
    store.close()


def test_what_another_process_writes_is_read_at_once(engine: Engine) -> None:
    """Two stores on one file (two processes): a remembered context is never stale."""
    mine, theirs = SqlContextStore(engine, POLICY), SqlContextStore(engine, POLICY)
    now = datetime.now(UTC)
    mine.append_many(_turn(1, now))
    assert len(mine.read(7, SEC)) == 2
    theirs.append_many(_turn(2, now))
    assert [m.content for m in mine.read(7, SEC)][-1] == "answer 2"
    assert theirs.clear(7, SEC)
    assert mine.read(7, SEC) == []
    theirs.append_many(_turn(3, now))
    assert [m.content for m in mine.read(7, SEC)] == [f"{HOSTILE} 3", "answer 3"]
    # Expiry: a context past its TTL reads empty from a store that remembers it.
    later = SqlContextStore(engine, POLICY, clock=lambda: now + timedelta(hours=2))
    assert later.read(7, SEC) == []
    mine.close()
    theirs.close()


def test_a_frozen_clock_clear_and_rewrite_is_not_served_stale(engine: Engine) -> None:
    """Same clock reading, same ids reused after a clear: the store forgets on its purge."""
    frozen = datetime(2026, 5, 1, tzinfo=UTC)
    store = SqlContextStore(engine, POLICY, clock=lambda: frozen)
    store.append_many([(7, SEC, Message("user", "first", frozen))])
    assert [m.content for m in store.read(7, SEC)] == ["first"]
    assert store.clear(7, SEC)
    store.append_many([(7, SEC, Message("user", "second", frozen))])
    assert [m.content for m in store.read(7, SEC)] == ["second"]
    store.close()


def test_random_interleavings_of_two_stores_read_what_core_reads(engine: Engine) -> None:
    import random

    rng = random.Random(20261130)
    small = ContextPolicy(timedelta(hours=1), 5)
    stores = [SqlContextStore(engine, small), SqlContextStore(engine, small)]
    core = _core_only(engine)

    async def scenario() -> None:
        for step in range(400):
            store = rng.choice(stores)
            user = rng.choice((7, 8))
            action = rng.random()
            at = datetime.now(UTC)
            if action < 0.45:
                turn = [(user, SEC, m) for _u, _s, m in _turn(step, at)]
                if rng.random() < 0.5:
                    await store.aappend_many(turn, policy=small)
                else:
                    store.append_many(turn, policy=small)
            elif action < 0.5:
                store.clear(user, SEC)
            else:
                limit = rng.choice((None, 1, 3))
                got = (
                    await store.aread(user, SEC, limit)
                    if action < 0.75
                    else store.read(user, SEC, limit)
                )
                assert got == core.read(user, SEC, limit), step

    asyncio.run(scenario())
    for store in stores:
        store.close()


def test_the_memo_stays_within_its_cap(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from secretaries_core.context.sqlite_lane import ContextMemo

    monkeypatch.setattr(ContextMemo, "CAP", 10)
    store = SqlContextStore(engine, POLICY)
    core = _core_only(engine)
    at = datetime.now(UTC)
    for user in range(20):
        store.append_many([(user, SEC, Message("user", f"u{user}", at))] * 1)
        store.append_many([(user, SEC, Message("assistant", f"a{user}", at))])
    for user in range(20):
        assert store.read(user, SEC) == core.read(user, SEC)
    assert store._lane is not None and store._lane.memo._size <= 12
    store.close()


def test_a_failed_checkpoint_is_logged_and_writes_go_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from secretaries_core.context.sqlite_lane import SqliteLane

    def broken(self: SqliteLane) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SqliteLane, "checkpoint", broken)
    monkeypatch.setattr(SqliteLane, "CHECKPOINT_EVERY", 5)
    store = SqlContextStore(engine, POLICY)

    async def write() -> None:
        for i in range(30):
            await store.aappend_many(_turn(i, datetime.now(UTC)))

    with caplog.at_level("WARNING", logger="secretaries_core.context.sql"):
        asyncio.run(write())
        store.close()  # waits for the pool: every checkpoint has reported by now
    assert len(store.read(7, SEC)) == 60
    assert any(
        "checkpoint" in r.getMessage() and "disk I/O" in r.getMessage() for r in caplog.records
    )


def test_a_resent_turn_is_found_by_a_store_that_remembers_it_and_one_that_does_not(
    engine: Engine,
) -> None:
    """The turn guard's look back: from the remembered context (no SQL) when this store
    knows the context at its version, else in SQL — the same answer either way, for ids
    written as numbers and as text, and a turn older than the look back is not found."""
    mine, theirs = SqlContextStore(engine, POLICY), SqlContextStore(engine, POLICY)
    now = datetime.now(UTC)

    def turn(update_id: object, text: str) -> list[tuple[int, uuid.UUID, Message]]:
        return [
            (9, SEC, Message("user", text, now, {"update_id": update_id})),
            (9, SEC, Message("assistant", f"re {text}", now)),
        ]

    mine.append_many(turn(501, "number"))
    mine.append_many(turn("x-502", "text"))
    assert mine._lane is not None and mine._lane.memo.knows((9, SEC.hex))
    for store in (mine, theirs, mine):  # remembered, not remembered, remembered again
        assert store.append_many(turn(501, "number")) == 0
        assert store.append_many(turn("x-502", "text")) == 0
        assert store.append_many(turn("501", "number as text")) == 0  # the same id
    for n in range(40):  # 80 messages later the first turn is past the look back (64)
        theirs.append_many(turn(1000 + n, f"filler {n}"))
    assert len(mine.read(9, SEC)) == 84
    assert mine.append_many(turn(501, "number, long after")) == 2
    mine.close()
    theirs.close()
