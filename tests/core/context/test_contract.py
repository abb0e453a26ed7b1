"""The context-store contract, run against every backend."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from secretaries_core.context import ContextPolicy, Message
from tests.context_fixtures import StoreHandle

U1, U2 = 1001, 1002
S1, S2 = uuid.UUID(int=1), uuid.UUID(int=2)


def msg(text: str, role: str = "user", **meta: object) -> Message:
    return Message(role, text, datetime.now(UTC), meta or None)


def texts(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def test_append_and_read_in_order(handle: StoreHandle) -> None:
    store = handle.store
    store.append(U1, S1, msg("hello", source="tg"))
    store.append(U1, S1, msg("hi, how can I help?", role="assistant"))
    got = store.read(U1, S1)
    assert texts(got) == ["hello", "hi, how can I help?"]
    assert got[0].role == "user" and got[1].role == "assistant"
    assert got[0].metadata == {"source": "tg"} and got[1].metadata is None
    assert got[0].at.tzinfo is not None
    assert abs((got[0].at - datetime.now(UTC)).total_seconds()) < 60
    assert texts(store.read(U1, S1, limit=1)) == ["hi, how can I help?"]
    assert store.read(U2, S1) == []


def test_pairs_are_isolated_and_switching_back_finds_old_context(handle: StoreHandle) -> None:
    store = handle.store
    store.append(U1, S1, msg("u1 to s1"))
    store.append(U1, S2, msg("u1 to s2"))
    store.append(U2, S1, msg("u2 to s1"))
    assert texts(store.read(U1, S1)) == ["u1 to s1"]
    assert texts(store.read(U1, S2)) == ["u1 to s2"]
    assert texts(store.read(U2, S1)) == ["u2 to s1"]
    assert store.read(U2, S2) == []
    assert store.clear(U1, S2) is True
    assert store.clear(U1, S2) is False
    assert texts(store.read(U1, S1)) == ["u1 to s1"]
    assert texts(store.read(U2, S1)) == ["u2 to s1"]


def test_cap_drops_oldest_first(handle: StoreHandle) -> None:
    store = handle.store
    for i in range(12):
        store.append(U1, S1, msg(f"m{i}"))
    assert texts(store.read(U1, S1)) == [f"m{i}" for i in range(7, 12)]  # cap 5
    small = ContextPolicy(timedelta(hours=1), 2)
    store.append(U1, S2, msg("a"), policy=small)
    store.append(U1, S2, msg("b"), policy=small)
    store.append(U1, S2, msg("c"), policy=small)
    assert texts(store.read(U1, S2)) == ["b", "c"]


def test_erase_user_and_secretary(handle: StoreHandle) -> None:
    store = handle.store
    for user in (U1, U2):
        for sec in (S1, S2):
            store.append(user, sec, msg(f"{user}-{sec.int}"))
    assert store.erase_user(U1) == 2
    assert store.read(U1, S1) == [] and store.read(U1, S2) == []
    assert texts(store.read(U2, S1)) == [f"{U2}-1"]
    assert store.erase_secretary(S1) == 1
    assert store.read(U2, S1) == []
    assert texts(store.read(U2, S2)) == [f"{U2}-2"]
    stats = store.stats()
    assert (stats.contexts, stats.messages) == (1, 1)
    assert stats.by_secretary == {S2: (1, 1)}


def test_stats_and_iter_contexts(handle: StoreHandle) -> None:
    store = handle.store
    store.append(U1, S1, msg("a"))
    store.append(U1, S1, msg("b"))
    store.append(U2, S1, msg("c"))
    store.append(U2, S2, msg("d"))
    stats = store.stats()
    assert (stats.contexts, stats.messages) == (3, 4)
    assert stats.by_secretary == {S1: (2, 3), S2: (1, 1)}
    mine = list(store.iter_contexts(user_id=U2))
    assert {(c.secretary_id, c.messages) for c in mine} == {(S1, 1), (S2, 1)}
    assert {c.user_id for c in store.iter_contexts(secretary_id=S1)} == {U1, U2}
    assert len(list(store.iter_contexts())) == 3
    assert [c.secretary_id for c in store.iter_contexts(user_id=U2, secretary_id=S2)] == [S2]


def test_purge_by_age_with_dry_run(handle: StoreHandle) -> None:
    store = handle.store
    store.append(U1, S1, msg("old"))
    store.append(U2, S1, msg("old too"))
    time.sleep(1.2)
    store.append(U1, S2, msg("fresh"))
    assert store.purge(older_than=timedelta(seconds=1), dry_run=True) == 2
    assert store.read(U1, S1) != []
    seen: list[tuple[int, int]] = []
    assert (
        store.purge(
            older_than=timedelta(seconds=1), batch_size=1, progress=lambda d, t: seen.append((d, t))
        )
        == 2
    )
    assert seen[-1] == (2, 2)
    assert store.read(U1, S1) == [] and store.read(U2, S1) == []
    assert texts(store.read(U1, S2)) == ["fresh"]
    assert store.purge(older_than=timedelta(seconds=1)) == 0


def test_purge_filters(handle: StoreHandle) -> None:
    store = handle.store
    for user in (U1, U2):
        for sec in (S1, S2):
            store.append(user, sec, msg("x"))
    assert store.purge(user_id=U1, dry_run=True) == 2
    assert store.purge(secretary_id=S2, dry_run=True) == 2
    assert store.purge(user_id=U1, secretary_id=S2) == 1
    assert store.purge(user_id=U1, older_than=timedelta(hours=1)) == 0
    assert store.purge(user_id=U1) == 1
    assert store.purge(secretary_id=S2) == 1
    assert [(c.user_id, c.secretary_id) for c in store.iter_contexts()] == [(U2, S1)]


def test_idle_context_expires(handle: StoreHandle) -> None:
    store = handle.store
    short = ContextPolicy(timedelta(milliseconds=600), 10)
    store.append(U1, S1, msg("soon gone"), policy=short)
    store.append(U1, S2, msg("kept"))
    assert texts(store.read(U1, S1)) == ["soon gone"]
    time.sleep(1.0)
    assert store.read(U1, S1) == []
    assert store.stats().contexts == 1
    store.append(U1, S1, msg("new start"), policy=short)
    assert texts(store.read(U1, S1)) == ["new start"]


def test_every_write_refreshes_expiry(handle: StoreHandle) -> None:
    store = handle.store
    short = ContextPolicy(timedelta(milliseconds=1200), 10)
    for i in range(4):
        store.append(U1, S1, msg(f"m{i}"), policy=short)
        time.sleep(0.5)
    assert texts(store.read(U1, S1)) == ["m0", "m1", "m2", "m3"]


def test_a_turn_delivered_twice_is_stored_once(handle: StoreHandle) -> None:
    """Whether its id is a string or a number: a write resent after its reply was lost
    (a failover, a restart) must not double the turn."""
    store = handle.store
    for n, update_id in enumerate(("77", 78)):
        turn = [
            (U1, S1, msg(f"question {n}", update_id=update_id)),
            (U1, S1, msg(f"answer {n}", role="assistant")),
        ]
        store.append_many(turn)
        store.append_many(turn)
    assert texts(store.read(U1, S1)) == ["question 0", "answer 0", "question 1", "answer 1"]


def test_fences_refuse_late_writes_of_turns_that_began_before(handle: StoreHandle) -> None:
    """`/new` (clear), purge --user and erase fence what they cleared: a turn or summary
    that began before cannot write it back; one that began after can (every backend)."""
    import asyncio

    from secretaries_core.context.fences import Fenced

    store = handle.store
    s1, s2 = uuid.uuid4(), uuid.uuid4()

    def item(user: int, sid: uuid.UUID, text: str) -> list[tuple[int, uuid.UUID, Message]]:
        return [(user, sid, Message("user", text, datetime.now(UTC)))]

    async def go() -> None:
        before = time.time() - 1
        await store.aappend_many(item(1, s1, "old"), since=before)
        store.clear(1, s1)  # /new on secretary s1
        with pytest.raises(Fenced):
            await store.aappend_many(item(1, s1, "late summary"), since=before)
        await store.aappend_many(item(1, s2, "other context"), since=before)  # not fenced
        await store.aappend_many(item(1, s1, "new turn"), since=time.time() + 1)
        store.erase_user(2)  # erase: every context of the user, even one not made yet
        with pytest.raises(Fenced):
            await store.aappend_many(item(2, s2, "late answer"), since=before)
        store.purge(user_id=3)
        with pytest.raises(Fenced):
            await store.aappend_many(item(3, s1, "late answer"), since=before)
        with pytest.raises(Fenced):  # the blocking twin checks the same fences
            store.append_since(item(3, s1, "late answer"), before)
        await store.aappend_many(item(3, s1, "without since: an import"))  # never fenced
        await store.aclose()

    asyncio.run(go())
    assert [m.content for m in store.read(1, s1)] == ["new turn"]
    assert [m.content for m in store.read(1, s2)] == ["other context"]
    assert store.read(2, s2) == []


def test_one_turn_written_at_once_by_many_writers_is_stored_once(handle: StoreHandle) -> None:
    """Twelve writers store the same turn (one update id) into an existing context at once,
    as workers that both answered one update do: it is stored once, on every backend."""
    import threading
    import uuid as uuid_lib
    from datetime import UTC, datetime

    from secretaries_core.context.base import Message

    store, sid = handle.store, uuid_lib.uuid4()
    now = datetime.now(UTC)
    store.append(77, sid, Message("user", "earlier", now))  # the context exists
    start = threading.Barrier(12)
    errors: list[BaseException] = []

    def write() -> None:
        turn = [
            (77, sid, Message("user", "book it", now, {"update_id": "9001"})),
            (77, sid, Message("assistant", "booked", now)),
        ]
        start.wait()
        try:
            store.append_many(turn)
        except BaseException as exc:  # a Conflict after retries would show here
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [m.content for m in store.read(77, sid)] == ["earlier", "book it", "booked"]
