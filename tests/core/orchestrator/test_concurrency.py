"""50 users x 20 messages, from 8 threads and from asyncio tasks: contexts never mix."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.context import ContextStore
from tests.core.orchestrator.conftest import MakeOrchestrator, add

USERS, MESSAGES = 50, 20


def _check(registry: SecretaryRegistry, store: ContextStore) -> None:
    alice = registry.get_secretary("alice").id
    for user in range(USERS):
        messages = store.read(1000 + user, alice)
        assert len(messages) == 2 * MESSAGES
        assert [m.content for m in messages[::2]] == [f"u{user}-m{i}" for i in range(MESSAGES)]
        assert [m.role for m in messages] == ["user", "assistant"] * MESSAGES
        for i, answer in enumerate(messages[1::2]):
            assert answer.content == f"[alice] u{user}-m{i} (context: {4 * i // 2} messages)"


def test_threads_in_shared_mode(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    orch = make_orchestrator(instance_mode="shared")

    def conversation(user: int) -> None:
        for i in range(MESSAGES):
            orch.handle(1000 + user, f"u{user}-m{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(conversation, range(USERS)))
    assert len(orch.pool) == 1
    _check(registry, store)


def test_asyncio_tasks_with_ahandle(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    orch = make_orchestrator()

    async def conversation(user: int) -> None:
        for i in range(MESSAGES):
            await orch.ahandle(1000 + user, f"u{user}-m{i}")

    async def main() -> None:
        await asyncio.gather(*(conversation(user) for user in range(USERS)))

    asyncio.run(main())
    _check(registry, store)
