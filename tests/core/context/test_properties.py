"""Property test: any interleaving of operations matches a plain in-memory model of the store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from secretaries_core.context import Message
from tests.context_fixtures import POLICY, StoreHandle

USERS = st.sampled_from([11, 12, 13])
SECRETARIES = st.sampled_from([uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)])
CAP = POLICY.max_messages


def test_store_matches_in_memory_model(handle: StoreHandle) -> None:
    store = handle.store

    class StoreModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            handle.reset()
            self.model: dict[tuple[int, uuid.UUID], list[str]] = {}
            self.counter = 0

        @rule(user=USERS, sec=SECRETARIES, role=st.sampled_from(["user", "assistant"]))
        def append(self, user: int, sec: uuid.UUID, role: str) -> None:
            self.counter += 1
            # The text names its pair, so a leak between pairs cannot go unnoticed.
            text = f"{user}/{sec.int}/#{self.counter}"
            store.append(user, sec, Message(role, text, datetime.now(UTC)))
            self.model.setdefault((user, sec), []).append(text)
            self.model[(user, sec)] = self.model[(user, sec)][-CAP:]

        @rule(user=USERS, sec=SECRETARIES, limit=st.none() | st.integers(1, CAP + 2))
        def read(self, user: int, sec: uuid.UUID, limit: int | None) -> None:
            got = [m.content for m in store.read(user, sec, limit)]
            want = self.model.get((user, sec), [])
            assert got == (want if limit is None else want[-limit:])
            assert all(t.startswith(f"{user}/{sec.int}/") for t in got)

        @rule(user=USERS, sec=SECRETARIES)
        def clear(self, user: int, sec: uuid.UUID) -> None:
            existed = store.clear(user, sec)
            assert existed == bool(self.model.pop((user, sec), None))

        @rule(user=USERS)
        def erase_user(self, user: int) -> None:
            removed = store.erase_user(user)
            mine = [k for k in self.model if k[0] == user]
            assert removed == len(mine)
            for key in mine:
                del self.model[key]

        @rule(sec=SECRETARIES)
        def erase_secretary(self, sec: uuid.UUID) -> None:
            removed = store.erase_secretary(sec)
            theirs = [k for k in self.model if k[1] == sec]
            assert removed == len(theirs)
            for key in theirs:
                del self.model[key]

        @invariant()
        def stats_agree(self) -> None:
            stats = store.stats()
            assert stats.contexts == len(self.model)
            assert stats.messages == sum(len(v) for v in self.model.values())

    run_state_machine_as_test(
        StoreModel,
        settings=settings(
            max_examples=12,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
