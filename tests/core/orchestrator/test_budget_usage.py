"""Token budgets, summaries, usage and quotas on the real message path, on every store.

The model is `tests.llm_server` through the real `openai` SDK: it can enforce a context
window (in characters) and reports `usage` like a provider, so the tests compare what was
recorded with what the server said.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from secretaries_core.catalog import admin
from secretaries_core.catalog.models import AssistantUpdate
from secretaries_core.conversation.instances import SUMMARY_HEADING
from secretaries_core.errors import QuotaExceeded
from secretaries_core.usage.quotas import day_of
from tests.core.orchestrator.test_message_path import STORES, Rig, _rig, llm  # noqa: F401
from tests.llm_server import Script


@pytest.fixture(params=STORES)
def rig(request: pytest.FixtureRequest, llm: tuple[str, Script]) -> Iterator[Rig]:  # noqa: F811
    yield from _rig(request, request.param, llm, max_message_chars=50_000)


def _set_params(rig: Rig, **params: object) -> None:
    current = dict(rig.registry.get_secretary("alice").params)
    rig.registry.update_secretary("alice", AssistantUpdate(params={**current, **params}))


# -- a context never gets stuck ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_context_over_the_window_never_gets_stuck(rig: Rig, stream: bool) -> None:
    """Window of 100,000 characters, long turns: every message after the overflow succeeds."""
    rig.script.window = 100_000
    # Our own budget is generous, so only the provider's window can refuse.
    _set_params(rig, max_context_tokens=10_000_000)
    long_texts = [f"long{i} " + "x" * 25_000 for i in range(4)]

    async def send(text: str) -> str:
        if not stream:
            return (await rig.orch.ahandle(7, text)).text
        return "".join([piece async for piece in rig.orch.astream(7, text)])

    async def go() -> list[str]:
        replies = [await send(t) for t in long_texts]
        replies += [await send(f"hi {i}") for i in range(5)]
        await rig.orch.aclose()
        return replies

    replies = asyncio.run(go())
    assert len(replies) == 9
    assert all(r.startswith("<You are alice.> re: ") for r in replies)
    refused = sum(1 for r in rig.script.usage_sent) != len(rig.script.requests)
    assert refused, "the window was never hit: the test proves nothing"
    retries = rig.orch.metrics.context_retries.labels(secretary="alice")._value.get()
    assert retries >= 1
    # Every turn was stored whole, overflow or not.
    assert rig.user_turns(7) == [*long_texts, *(f"hi {i}" for i in range(5))]


def test_the_budget_keeps_the_newest_whole_turns_and_the_prompt(rig: Rig) -> None:
    _set_params(rig, max_context_tokens=250, max_tokens=20)
    for i in range(8):
        rig.orch.handle(8, f"message number {i} " + "word " * 10)
    sent = rig.script.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are alice."}
    assert sent[-1]["content"].startswith("message number 7")
    history = sent[1:-1]
    assert 0 < len(history) < 14 and len(history) % 2 == 0
    # Whole turns, newest first: user, assistant, user, assistant... ending before the new one.
    assert [m["role"] for m in history] == ["user", "assistant"] * (len(history) // 2)
    assert history[-2]["content"].startswith("message number 6")


# -- summaries --------------------------------------------------------------------------------


def test_trimmed_turns_reach_the_model_in_the_summary(rig: Rig) -> None:
    _set_params(rig, max_context_tokens=150, summarize=True)

    async def go() -> None:
        for i in range(6):
            await rig.orch.ahandle(9, f"fact{i} is remembered")
            await rig.orch.drain()
        await rig.orch.aclose()

    asyncio.run(go())
    chats = [r for r in rig.script.requests if r["messages"][0]["content"].startswith("You are")]
    last_system = chats[-1]["messages"][0]["content"]
    assert SUMMARY_HEADING in last_system
    sent_turns = " ".join(m["content"] for m in chats[-1]["messages"][1:])
    # fact0 was trimmed from the turns, and reaches the model through the summary.
    assert "fact0" not in sent_turns
    assert "fact0" in last_system
    stored = rig.store.read(9, rig.registry.get_secretary("alice").id)
    assert any(m.role == "summary" for m in stored)
    assert rig.user_turns(9) == [f"fact{i} is remembered" for i in range(6)]


def test_a_failed_summary_keeps_every_turn(rig: Rig) -> None:
    _set_params(rig, max_context_tokens=150, summarize=True)
    rig.script.default = "ok"

    async def go() -> None:
        for i in range(5):
            await rig.orch.ahandle(10, f"note{i} here")
            # Every summary call fails; the chat calls succeed.
            rig.script.steps = ["500"] if i >= 1 else []
            await rig.orch.drain()
            rig.script.steps = []
        await rig.orch.aclose()

    rig.orch.settings = rig.orch.settings  # settings are per orchestrator; no retries here
    asyncio.run(go())
    stored = rig.store.read(10, rig.registry.get_secretary("alice").id)
    assert [m.content for m in stored if m.role == "user"] == [f"note{i} here" for i in range(5)]
    assert not any(m.role == "summary" for m in stored)


# -- usage ------------------------------------------------------------------------------------


def test_usage_equals_what_the_server_reported_under_8_concurrent_users(rig: Rig) -> None:
    rig.script.latency = 0.02

    async def user(uid: int) -> None:
        for i in range(4):
            if i % 2:
                await rig.orch.ahandle(uid, f"q{i}")
            else:
                _ = [p async for p in rig.orch.astream(uid, f"q{i}")]

    async def go() -> None:
        await asyncio.gather(*(user(100 + u) for u in range(8)))
        await rig.orch.aclose()

    asyncio.run(go())
    report = admin.usage_report(rig.registry)
    assert report.total.messages == 32 == len(rig.script.usage_sent)
    assert report.total.prompt_tokens == sum(u["prompt_tokens"] for u in rig.script.usage_sent)
    assert report.total.completion_tokens == sum(
        u["completion_tokens"] for u in rig.script.usage_sent
    )
    assert report.total.estimated_calls == 0
    assert set(report.by_secretary) == {"alice"}
    one = admin.usage_report(rig.registry, user=103)
    assert one.total.messages == 4
    tokens = rig.orch.metrics.tokens.labels(secretary="alice", model="openai/m", kind="prompt")
    assert tokens._value.get() == report.total.prompt_tokens


def test_a_stream_the_caller_abandons_still_counts_its_tokens(rig: Rig) -> None:
    """The model worked for the pieces the caller saw: they are paid for, so counted."""
    rig.script.chunk_delay = 0.05

    async def go() -> None:
        stream = rig.orch.astream(21, "a question whose answer nobody reads to the end")
        async for _piece in stream:
            break
        await stream.aclose()
        await rig.orch.aclose()

    asyncio.run(go())
    report = admin.usage_report(rig.registry, user=21)
    assert report.total.messages == 1
    assert report.total.prompt_tokens > 0 and report.total.completion_tokens > 0
    assert report.total.estimated_calls == 1
    assert rig.turns(21) == []  # nothing stored


# -- quotas -----------------------------------------------------------------------------------


def test_20_racing_messages_at_a_limit_of_5_let_exactly_5_through(rig: Rig) -> None:
    _set_params(rig, messages_per_day=5, double_texting="enqueue")

    async def go() -> list[object]:
        # 20 users' worth of racing is one user here: the quota is per user.
        results = await asyncio.gather(
            *(rig.orch.ahandle(11, f"r{i}") for i in range(20)), return_exceptions=True
        )
        await rig.orch.aclose()
        return results

    results = asyncio.run(go())
    passed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(passed) == 5 and len(refused) == 15
    assert len(rig.user_turns(11)) == 5
    assert len(rig.script.usage_sent) == 5  # no model call for a refused message
    tomorrow = datetime.combine(day_of(datetime.now(UTC)) + timedelta(days=1), datetime.min.time())
    assert f"{tomorrow:%Y-%m-%d} 00:00 UTC" in str(refused[0])


def test_over_quota_is_refused_before_anything_and_overrides_win(rig: Rig) -> None:
    _set_params(rig, messages_per_day=100)
    rig.registry.add_user(12)
    rig.registry.set_limits(12, messages_per_day=1)
    rig.orch.cache.invalidate()
    rig.orch.handle(12, "first")
    calls = len(rig.script.requests)
    with pytest.raises(QuotaExceeded) as refused:
        rig.orch.handle(12, "second")
    assert refused.value.resets_at is not None
    assert len(rig.script.requests) == calls
    assert rig.user_turns(12) == ["first"]
    # Removing the override gives the secretary's limit back.
    rig.registry.set_limits(12, messages_per_day=None)
    assert rig.orch.handle(12, "third").text.endswith("(2 earlier)")


def test_a_failed_call_gives_its_quota_back(rig: Rig) -> None:
    _set_params(rig, messages_per_day=1)
    rig.script.steps = ["400"]
    with pytest.raises(Exception):  # noqa: B017  (ModelError; the point is what follows)
        rig.orch.handle(13, "fails")
    assert rig.orch.handle(13, "works").text.startswith("<You are alice.> re: works")


def test_token_quota(rig: Rig) -> None:
    _set_params(rig, tokens_per_day=1)
    rig.orch.handle(14, "the first message passes: nothing was used yet")
    with pytest.raises(QuotaExceeded, match="quota of 1 tokens"):
        rig.orch.handle(14, "over")


# -- secrets in model errors ------------------------------------------------------------------


def test_model_errors_never_carry_passwords(rig: Rig) -> None:
    from secretaries_core.errors import ModelError

    rig.script.steps = ["leaky"]
    with pytest.raises(ModelError) as failed:
        rig.orch.handle(15, "hi")
    assert "hunter2" not in str(failed.value) and "svc:***@" in str(failed.value)


def test_the_model_base_url_is_masked(rig: Rig) -> None:
    from dataclasses import replace

    from secretaries_core.errors import ModelError
    from secretaries_core.orchestrator import Orchestrator

    settings = replace(
        rig.orch.settings,
        openai_base_url="http://key:hunter2@127.0.0.1:9/v1",
        model_timeout_seconds=5.0,
    )
    orch = Orchestrator(rig.registry, rig.store, settings)
    try:
        # aiohttp refuses credentials in the URL next to the API key; either way, masked.
        with pytest.raises(ModelError) as failed:
            orch.handle(16, "hi")
    finally:
        orch.close()
    assert "hunter2" not in str(failed.value) and "key:***@" in str(failed.value)
