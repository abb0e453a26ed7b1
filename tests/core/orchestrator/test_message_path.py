"""The asynchronous message path against a real OpenAI-compatible server, on every store.

The model is `tests.llm_server` driven through the real `openai` SDK (no mocks): its
replies say how many messages each request held, so the tests can prove what the model saw.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.config import Settings
from secretaries_core.context import ContextStore
from secretaries_core.errors import (
    Busy,
    Interrupted,
    InvalidInput,
    ModelError,
    SecretariesError,
    UnknownUser,
)
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.conftest import snapshot
from tests.context_fixtures import make_store
from tests.core.orchestrator.conftest import add
from tests.llm_server import Script, llm_server

STORES = ["sqlite", "postgresql", "redis", "cluster"]


@dataclass
class Rig:
    """An orchestrator on a fresh registry and store, with the model server behind it."""

    orch: Orchestrator
    registry: SecretaryRegistry
    store: ContextStore
    script: Script
    url: str

    def user_turns(self, telegram_id: int, name: str = "alice") -> list[str]:
        sid = self.registry.get_secretary(name).id
        return [m.content for m in self.store.read(telegram_id, sid) if m.role == "user"]

    def turns(self, telegram_id: int, name: str = "alice") -> list[tuple[str, str]]:
        sid = self.registry.get_secretary(name).id
        return [(m.role, m.content) for m in self.store.read(telegram_id, sid)]


@pytest.fixture
def llm() -> Iterator[tuple[str, Script]]:
    with llm_server() as running:
        yield running


def _rig(
    request: pytest.FixtureRequest, backend: str, llm: tuple[str, Script], **overrides: Any
) -> Iterator[Rig]:
    url, script = llm
    options: dict[str, Any] = {
        "openai_base_url": url,
        "model_max_retries": 0,
        "model_timeout_seconds": 10.0,
        "context_max_messages": 200,
        **overrides,
    }
    settings = replace(Settings.load(env={}), **options)
    handle = make_store(request, backend, settings.context_policy)
    stored = next(handle)
    if backend in ("sqlite", "postgresql"):
        engine = stored.store.engine  # type: ignore[attr-defined]
    else:
        engine = make_engine(f"sqlite:///{request.getfixturevalue('tmp_path') / 'reg.db'}")
        schema.upgrade(engine)
    registry = SecretaryRegistry(engine)
    add(registry, "alice", model="openai/m", default=True)
    orch = Orchestrator(registry, stored.store, settings)
    yield Rig(orch, registry, stored.store, script, url)
    orch.close()
    for _ in handle:
        pass


@pytest.fixture(params=STORES)
def rig(request: pytest.FixtureRequest, llm: tuple[str, Script]) -> Iterator[Rig]:
    """A rig once per store: SQLite, PostgreSQL, Redis and Redis Cluster."""
    yield from _rig(request, request.param, llm)


# -- many users at once ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def load_rig(request: pytest.FixtureRequest, llm: tuple[str, Script]) -> Iterator[Rig]:
    yield from _rig(request, request.param, llm)


def test_300_users_at_once_are_all_in_flight(load_rig: Rig) -> None:
    rig = load_rig
    # Every answer waits until more than 100 requests are in flight together (or 30 s):
    # a path that answered one at a time could not get there.
    rig.script.latency = 0.0
    rig.script.hold_until = 101
    rig.script.record = False

    async def burst() -> list[str]:
        replies = await asyncio.gather(*(rig.orch.ahandle(1000 + u, f"hi {u}") for u in range(300)))
        await rig.orch.aclose()
        return [r.text for r in replies]

    started = time.perf_counter()
    texts = asyncio.run(burst())
    elapsed = time.perf_counter() - started
    assert texts == [f"<You are alice.> re: hi {u} (0 earlier)" for u in range(300)]
    assert rig.script.peak_in_flight > 100, rig.script.peak_in_flight
    assert elapsed < rig.script.hold_timeout, elapsed


# -- one user, one message at a time ---------------------------------------------------------


def _assert_in_order(rig: Rig, telegram_id: int, sent: list[str], replies: list[str]) -> None:
    # Each reply says how many messages its request held: all earlier turns, in order.
    for i, (text, reply) in enumerate(zip(sent, replies, strict=True)):
        assert reply == f"<You are alice.> re: {text} ({2 * i} earlier)"
    assert rig.user_turns(telegram_id) == sent


def test_gathered_messages_of_one_user(rig: Rig) -> None:
    rig.script.latency = 0.05
    sent = [f"m{i}" for i in range(5)]

    async def go() -> list[str]:
        replies = await asyncio.gather(*(rig.orch.ahandle(7, text) for text in sent))
        await rig.orch.aclose()
        return [r.text for r in replies]

    _assert_in_order(rig, 7, sent, asyncio.run(go()))


def test_messages_from_threads(rig: Rig) -> None:
    rig.script.latency = 0.05
    sent = [f"t{i}" for i in range(5)]
    replies: dict[str, str] = {}

    def send(text: str) -> None:
        replies[text] = rig.orch.handle(8, text).text

    threads = []
    for text in sent:
        thread = threading.Thread(target=send, args=(text,))
        thread.start()
        threads.append(thread)
        time.sleep(0.02)  # arrival order = this order
    for thread in threads:
        thread.join()
    _assert_in_order(rig, 8, sent, [replies[t] for t in sent])


def test_messages_0_3_s_apart_with_a_slow_model(rig: Rig) -> None:
    rig.script.latency = 0.7  # each answer outlasts the gap to the next message
    sent = ["My name is Bob", "what is my name?", "m3", "m4", "m5"]

    async def go() -> list[str]:
        tasks = []
        for text in sent:
            tasks.append(asyncio.ensure_future(rig.orch.ahandle(9, text)))
            await asyncio.sleep(0.3)
        replies = [(await t).text for t in tasks]
        await rig.orch.aclose()
        return replies

    _assert_in_order(rig, 9, sent, asyncio.run(go()))
    assert rig.script.peak_in_flight == 1


@pytest.fixture(params=STORES)
def reject_rig(request: pytest.FixtureRequest, llm: tuple[str, Script]) -> Iterator[Rig]:
    yield from _rig(request, request.param, llm, double_texting="reject")


def test_reject_refuses_a_second_message(reject_rig: Rig) -> None:
    rig = reject_rig
    rig.script.latency = 0.5

    async def go() -> tuple[Any, Any]:
        first = asyncio.ensure_future(rig.orch.ahandle(10, "first"))
        await asyncio.sleep(0.2)
        second = await asyncio.gather(rig.orch.ahandle(10, "second"), return_exceptions=True)
        done = await first
        await rig.orch.aclose()
        return done, second[0]

    done, refused = asyncio.run(go())
    assert isinstance(refused, Busy) and done.text.endswith("(0 earlier)")
    assert rig.user_turns(10) == ["first"]
    assert len(rig.script.requests) == 1


@pytest.fixture(params=STORES)
def interrupt_rig(request: pytest.FixtureRequest, llm: tuple[str, Script]) -> Iterator[Rig]:
    yield from _rig(request, request.param, llm, double_texting="interrupt")


def test_interrupt_cancels_the_answer_in_progress(interrupt_rig: Rig) -> None:
    rig = interrupt_rig
    rig.orch.handle(11, "before")
    rig.script.latency = 0.6

    async def go() -> tuple[Any, Any]:
        first = asyncio.ensure_future(rig.orch.ahandle(11, "Hi, I am Bob"))
        await asyncio.sleep(0.3)  # the first one is at the model now
        second = await rig.orch.ahandle(11, "actually, call me Rob")
        outcome = await asyncio.gather(first, return_exceptions=True)
        await rig.orch.aclose()
        return outcome[0], second

    interrupted, answer = asyncio.run(go())
    assert isinstance(interrupted, Interrupted)
    # The new call saw the earlier unanswered message; nothing of the cancelled one stored.
    last = rig.script.requests[-1]["messages"]
    assert [m["content"] for m in last[-2:]] == ["Hi, I am Bob", "actually, call me Rob"]
    assert answer.text == "<You are alice.> re: actually, call me Rob (3 earlier)"
    assert rig.turns(11) == [
        ("user", "before"),
        ("assistant", "<You are alice.> re: before (0 earlier)"),
        ("user", "Hi, I am Bob"),
        ("user", "actually, call me Rob"),
        ("assistant", answer.text),
    ]


def test_a_secretary_param_sets_the_policy(rig: Rig) -> None:
    from secretaries_core.catalog.models import AssistantUpdate

    rig.registry.update_secretary("alice", AssistantUpdate(params={"double_texting": "reject"}))
    rig.script.latency = 0.4

    async def go() -> list[Any]:
        out = await asyncio.gather(
            rig.orch.ahandle(12, "a"), rig.orch.ahandle(12, "b"), return_exceptions=True
        )
        await rig.orch.aclose()
        return out

    first, second = asyncio.run(go())
    assert not isinstance(first, BaseException) and isinstance(second, Busy)


# -- streaming -------------------------------------------------------------------------------


def test_stream_pieces_make_the_stored_turn(rig: Rig) -> None:
    rig.script.chunk_delay = 0.01

    async def go() -> tuple[list[str], Any]:
        stream = rig.orch.astream(13, "stream this please")
        pieces = [piece async for piece in stream]
        await rig.orch.aclose()
        return pieces, stream.reply

    pieces, reply = asyncio.run(go())
    assert len(pieces) > 3
    assert "".join(pieces) == reply.text == "<You are alice.> re: stream this please (0 earlier)"
    assert rig.turns(13)[-1] == ("assistant", reply.text)
    assert rig.script.requests[-1]["stream"] is True


def test_a_stream_stopped_early_or_failing_stores_nothing(rig: Rig) -> None:
    rig.orch.handle(14, "kept")
    before = rig.turns(14)
    rig.script.chunk_delay = 0.05

    async def go() -> Any:
        stream = rig.orch.astream(14, "abandoned")
        async for _piece in stream:
            break
        await stream.aclose()
        rig.script.default = "500"
        failing = rig.orch.astream(14, "fails")
        outcome = await asyncio.gather(_drain(failing), return_exceptions=True)
        # The user's turn was released: the next message is answered at once.
        rig.script.default = "ok"
        rig.script.chunk_delay = 0.0
        after = await rig.orch.ahandle(14, "next")
        await rig.orch.aclose()
        return outcome[0], after

    failure, after = asyncio.run(go())
    assert isinstance(failure, ModelError)
    assert after.text.endswith("(2 earlier)")
    assert rig.turns(14)[:2] == before and rig.user_turns(14) == ["kept", "next"]


async def _drain(stream: Any) -> list[str]:
    return [piece async for piece in stream]


# -- faults of the model server --------------------------------------------------------------


@pytest.fixture
def sqlite_rig(request: pytest.FixtureRequest, llm: tuple[str, Script]) -> Iterator[Rig]:
    yield from _rig(request, "sqlite", llm, model_timeout_seconds=2.0, model_max_retries=1)


@pytest.mark.parametrize("fault", ["500", "malformed", "empty", "close", "trickle", "hang", "400"])
@pytest.mark.parametrize("streaming", [False, True])
def test_every_model_fault_is_our_error_within_the_deadline(
    sqlite_rig: Rig, fault: str, streaming: bool
) -> None:
    rig = sqlite_rig
    rig.orch.handle(15, "kept")
    before = rig.turns(15)
    rig.script.default = fault

    async def go() -> BaseException:
        call = _drain(rig.orch.astream(15, "x")) if streaming else rig.orch.ahandle(15, "x")
        outcome = await asyncio.gather(call, return_exceptions=True)
        await rig.orch.aclose()
        assert isinstance(outcome[0], BaseException)
        return outcome[0]

    started = time.perf_counter()
    error = asyncio.run(go())
    assert isinstance(error, SecretariesError), repr(error)
    assert time.perf_counter() - started < 2.0 + 1.0  # the deadline, plus scheduling slack
    assert rig.turns(15) == before


def test_a_stream_cut_before_its_first_piece_is_asked_again(sqlite_rig: Rig) -> None:
    rig = sqlite_rig
    rig.script.steps = ["sse-close"]
    asked = len(rig.script.requests)

    async def go() -> list[str]:
        pieces = await _drain(rig.orch.astream(16, "are you there"))
        await rig.orch.aclose()
        return pieces

    pieces = asyncio.run(go())
    assert "re: are you there" in "".join(pieces)
    assert len(rig.script.requests) - asked == 2  # the cut stream, then the answer
    assert rig.turns(16)[-1][1].endswith("(0 earlier)")


# -- input that cannot be answered ----------------------------------------------------------


@pytest.mark.parametrize(
    ("telegram_id", "text"),
    [
        (16, "nul \x00 inside"),
        (16, "lone \ud800 surrogate"),
        (16, "x" * 16_001),
        (16, "   "),
        (0, "hi"),
        (-5, "hi"),
        (2**63, "hi"),
        (True, "hi"),
    ],
)
def test_bad_input_is_refused_before_anything(sqlite_rig: Rig, telegram_id: Any, text: str) -> None:
    rig = sqlite_rig
    before = snapshot(rig.registry.engine)
    with pytest.raises(InvalidInput):
        rig.orch.handle(telegram_id, text)
    assert rig.script.requests == []
    assert snapshot(rig.registry.engine) == before
    if telegram_id == 16:
        with pytest.raises(UnknownUser):
            rig.registry.get_user(16)


def test_a_reply_with_a_lone_surrogate_or_nul_is_stored_safely(rig: Rig) -> None:
    # No store can keep a NUL (PostgreSQL) or a lone surrogate (UTF-8): they are replaced.
    rig.script.default = "dirty"
    reply = rig.orch.handle(17, "hi")
    assert "\ufffd" in reply.text and "\x00" not in reply.text
    assert rig.turns(17)[-1] == ("assistant", reply.text)


# -- lifecycle -------------------------------------------------------------------------------


def test_from_settings_opens_everything(tmp_path: Path, llm: tuple[str, Script]) -> None:
    url, _script = llm
    env = {"SECRETARIES_HOME": str(tmp_path / "home"), "SECRETARIES_OPENAI_BASE_URL": url}
    settings = Settings.load(env=env)
    with Orchestrator.from_settings(settings) as orch:
        add(orch.registry, "alice", model="openai/m", default=True)
        assert orch.handle(1, "hi").text == "<You are alice.> re: hi (0 earlier)"

    async def go() -> str:
        async with Orchestrator.from_settings(settings) as orch:
            return (await orch.ahandle(1, "again")).text

    assert asyncio.run(go()) == "<You are alice.> re: again (2 earlier)"


# -- the resolution cache --------------------------------------------------------------------


def test_new_users_do_not_clear_the_cache(sqlite_rig: Rig) -> None:
    rig = sqlite_rig
    for user in range(1, 11):
        rig.orch.handle(user, "hi")
    misses = rig.orch.metrics.resolution_cache_misses._value.get()
    for round_ in range(3):
        for user in range(1, 11):
            rig.orch.handle(user, f"again {round_}")
        rig.orch.handle(100 + round_, "a new user")  # registers: invalidates that user only
    # Only the three new users went to the database.
    assert rig.orch.metrics.resolution_cache_misses._value.get() - misses == 3


def test_assign_invalidates_one_user_and_wins_over_a_racing_lookup(sqlite_rig: Rig) -> None:
    rig = sqlite_rig
    add(rig.registry, "bob", model="openai/m")
    rig.orch.handle(1, "hi")
    rig.orch.handle(2, "hi")
    # A lookup that read the old link before the assignment committed...
    stale, ticket = rig.orch._lookup(1, None)
    rig.registry.assign(1, "bob")
    # ...cannot put it back into the cache afterwards.
    assert rig.orch.cache.put(1, stale, ticket) is False
    assert rig.orch.cache.get(1) is None
    assert rig.orch.cache.get(2) is not None  # other users keep their entries
    assert rig.orch.handle(1, "who?").secretary == "bob"
