"""What a user reads is what is stored: one update, one stored turn, one delivered text.

Two "workers" (two orchestrators on one store, each with its own model server that answers
differently) answer the same update at once, as after a stalled lease: both return the one
answer the store kept. An update answered before the user switched secretary and delivered
again afterwards gets the answer stored with the first secretary, and nothing is stored
twice. Real stores: the database and Redis.
"""

from __future__ import annotations

import asyncio

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.context import ContextStore
from tests.core.orchestrator.conftest import MakeOrchestrator, add
from tests.llm_server import Script, llm_server


def test_two_answerers_of_one_update_both_return_the_stored_turn(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", model="openai/m", default=True)
    with (
        llm_server(Script(latency=0.3, tag="A:")) as (url_a, _a),
        llm_server(Script(latency=0.3, tag="B:")) as (url_b, _b),
    ):
        first = make_orchestrator(openai_base_url=url_a)
        second = make_orchestrator(openai_base_url=url_b)

        async def both() -> list[str]:
            replies = await asyncio.gather(
                first.ahandle(4242, "book it", idempotency_key="9001"),
                second.ahandle(4242, "book it", idempotency_key="9001", redelivered=True),
            )
            for orch in (first, second):
                await orch.aclose()
            return [r.text for r in replies]

        texts = asyncio.run(both())
    sid = registry.get_secretary("alice").id
    stored = [m for m in store.read(4242, sid) if m.role == "assistant"]
    assert len(stored) == 1, stored
    assert texts == [stored[0].content, stored[0].content], (texts, stored)


def test_a_redelivery_after_a_switch_gets_the_answer_stored_before_it(
    registry: SecretaryRegistry, store: ContextStore, make_orchestrator: MakeOrchestrator
) -> None:
    add(registry, "alice", default=True)
    add(registry, "bob")
    orch = make_orchestrator()

    async def go() -> tuple[str, str, str, str]:
        answered = await orch.ahandle(5151, "what is on today?", idempotency_key="77")
        registry.assign(5151, "bob")
        again = await orch.ahandle(
            5151, "what is on today?", idempotency_key="77", redelivered=True
        )
        now = await orch.ahandle(5151, "and tomorrow?", idempotency_key="78")
        await orch.aclose()
        return answered.text, again.text, again.secretary, now.secretary

    answered, again, secretary, now = asyncio.run(go())
    assert now == "bob"  # the switch took effect
    assert again == answered and secretary == "alice"
    alice, bob = registry.get_secretary("alice").id, registry.get_secretary("bob").id
    assert len(store.read(5151, alice)) == 2
    assert [m.content for m in store.read(5151, bob) if m.role == "user"] == ["and tomorrow?"]
