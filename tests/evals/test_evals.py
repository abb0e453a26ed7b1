"""Release gates through the library: suites, every check kind, the judge, the gate, usage
under `eval`/`judge`, and a judged canary rolling itself back — against the model double
(which also plays the judge: tests/llm_server.py `judged`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from secretaries_core.catalog.models import AssistantCreate, AssistantUpdate
from secretaries_core.catalog.registry import SecretaryRegistry
from secretaries_core.catalog.registry.rollouts import Judging
from secretaries_core.catalog.versions_tables import VERSION_COUNT_TABLE
from secretaries_core.config import Settings
from secretaries_core.context.sql import SqlContextStore
from secretaries_core.errors import InvalidInput
from secretaries_core.evals.judge import Unreadable, read_verdict
from secretaries_core.evals.runner import run_eval
from secretaries_core.evals.suite import parse_suite, suite_from_doc
from secretaries_core.orchestrator import Orchestrator
from secretaries_core.plumbing import schema
from secretaries_core.plumbing.db import make_engine
from tests.llm_server import Script, llm_server

# The double answers `<prompt> re: <message> (<n> earlier)`.
PROMPT_V1, PROMPT_V2 = "You are Alice.", "You are Alice, warm and brief."


class Rig:
    def __init__(self, tmp_path: Path, url: str) -> None:
        self.engine = make_engine(f"sqlite:///{tmp_path / 'evals.db'}")
        schema.upgrade(self.engine)
        self.registry = SecretaryRegistry(self.engine)
        self.registry.create_secretary(
            AssistantCreate(name="alice", model="openai/m", prompt=PROMPT_V1, is_default=True)
        )
        self.registry.update_secretary("alice", AssistantUpdate(prompt=PROMPT_V2), draft=True)
        self.store = SqlContextStore(self.engine, Settings.load(env={}).context_policy)
        settings = replace(Settings.load(env={}), openai_base_url=url, resolution_ttl_seconds=0.0)
        self.orch = Orchestrator(self.registry, self.store, settings)

    def run(self, suite: Any, **kwargs: Any) -> Any:
        return self.orch.run_sync(run_eval(self.orch, "alice", suite, **kwargs))

    def period(self, name: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(VERSION_COUNT_TABLE).where(VERSION_COUNT_TABLE.c.period == name)
                )
            )

    def close(self) -> None:
        self.orch.close()
        self.store.close()
        self.engine.dispose()


@pytest.fixture
def served() -> Iterator[tuple[str, Script]]:
    with llm_server() as found:
        yield found


@pytest.fixture
def rig(tmp_path: Path, served: tuple[str, Script]) -> Iterator[Rig]:
    made = Rig(tmp_path, served[0])
    yield made
    made.close()


def _suite(*cases: dict[str, Any], judge: bool = True) -> Any:
    return suite_from_doc(
        {"judge_model": "openai/judge", "cases": list(cases)} if judge else {"cases": list(cases)}
    )


def test_every_check_kind_passes_and_fails(rig: Rig) -> None:
    suite = _suite(
        {"name": "passes", "message": "Who are you?", "expect": [
            {"contains": "warm and brief"}, {"not_contains": "BAD"},
            {"regex": r"re: Who are you\? \(0 earlier\)"}, {"max_chars": 200},
            {"judge": "Polite."},
        ]},
        {"name": "history", "message": "And now?",
         "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hi!"}],
         "expect": [{"contains": "(2 earlier)"}]},
        {"name": "fails", "message": "Who are you?", "expect": [
            {"contains": "Bob"}, {"not_contains": "Alice"}, {"regex": "^nope$"},
            {"max_chars": 5}, {"json_schema": {"type": "object"}},
        ]},
    )  # fmt: skip
    result = rig.run(suite)
    assert (result.version, result.passed, result.failed) == (2, 2, 1)
    failures = result.cases[2].failures
    assert [f.split(":")[0] for f in failures] == [
        "contains", "not_contains", "regex", "max_chars", "json_schema",
    ]  # fmt: skip
    assert "is not JSON" in failures[-1]
    # Version 1 on request; the result is kept per version.
    assert rig.run(_suite({"name": "v1", "message": "x", "expect": [{"contains": "Alice."}]},
                          judge=False), version=1).passed == 1  # fmt: skip
    evals = {v.version: v.doc()["eval"] for v in rig.registry.versions("alice")}
    assert evals[2]["passed"] == 2 and evals[2]["failed"] == 1 and evals[1]["failed"] == 0


def test_json_schema_check_on_json_replies() -> None:
    from secretaries_core.evals.checks import failure
    from secretaries_core.evals.suite import Check

    schema = {"type": "object", "required": ["room"], "properties": {"room": {"type": "string"}}}
    check = Check("json_schema", schema)
    assert failure(check, '{"room": "A1"}') is None
    assert "at room" in (failure(check, '{"room": 7}') or "")
    assert "'room' is a required property" in (failure(check, "{}") or "")
    assert "is not JSON" in (failure(check, "room A1") or "")


def test_the_judge_passes_fails_and_an_unreadable_verdict_is_a_failure(
    rig: Rig, served: Any
) -> None:
    suite = _suite({"name": "judged", "message": "hello", "expect": [{"judge": "Polite."}]})
    assert rig.run(suite).passed == 1
    served[1].tag = "BAD "
    failed = rig.run(suite).cases[0].failures
    assert failed == ["judge: FAIL: rude to the user"]
    served[1].tag = "GARBAGE "
    failed = rig.run(suite).cases[0].failures
    assert len(failed) == 1 and "could not be read" in failed[0]
    # Strict parsing, no pass by accident.
    assert read_verdict("PASS: fine").passed and not read_verdict("FAIL - no").passed
    for text in ("pass: fine", "I'd say PASS", "PASSABLE", "", "**PASS**"):
        with pytest.raises(Unreadable):
            read_verdict(text)
    # Usage: the version's calls under `eval`, the judge's under `judge`, nothing else.
    rig.orch.flush_usage()
    assert sum(r.messages for r in rig.period("eval")) == 3
    assert sum(r.messages for r in rig.period("judge")) == 3
    assert sum(r.messages for r in rig.period("all")) == 0


def test_bad_suites_are_refused_naming_the_case() -> None:
    for text, fragment in (
        ("cases: []", "non-empty `cases`"),
        ("cases: [{name: a, message: m, expect: [{nope: 1}]}]", "unknown check 'nope'"),
        ("cases: [{name: a, message: m, expect: [{regex: '('}]}]", "does not compile"),
        ("cases: [{name: a, message: m, expect: [{judge: ok}]}]", "need `judge_model"),
        ("cases: [{name: a, message: m, expect: [{max_chars: 0}]}]", "positive whole"),
        ("cases: [{name: a, message: m, expect: [{contains: x}]},"
         " {name: a, message: m, expect: [{contains: x}]}]", "used twice"),
        ("cases: [{name: a, message: m, expect: [{json_schema: {type: 7}}]}]", "not a valid"),
        ("cases: [{name: a, message: m, history: [{role: x, content: y}],"
         " expect: [{contains: x}]}]", "role: user|assistant"),
        ("cases: [{name: a, expect: [{contains: x}]}]", "needs a `message`"),
        ("cases: [", "not valid YAML"),
    ):  # fmt: skip
        with pytest.raises(InvalidInput) as caught:
            parse_suite(text, "s.yaml")
        assert fragment in str(caught.value), (text, str(caught.value))


def test_the_gate_refuses_then_allows(rig: Rig, served: Any) -> None:
    def start() -> Any:
        return rig.registry.rollout_start("alice", percent=10, require_eval=True)

    with pytest.raises(InvalidInput, match="has no eval: run `secretaries eval alice"):
        start()
    served[1].tag = "BAD "
    suite = _suite({"name": "polite", "message": "hi", "expect": [{"judge": "Polite."}]})
    assert rig.run(suite).failed == 1
    with pytest.raises(InvalidInput, match=r"failed 1 case.*polite: judge: FAIL"):
        start()
    served[1].tag = ""
    assert rig.run(suite).failed == 0
    assert start().candidate_version == 2


def test_an_eval_goes_stale_when_a_tool_it_calls_changes(rig: Rig) -> None:
    from secretaries_core.tools.registry import ToolRegistry
    from secretaries_core.tools.spec import ToolSpec

    tools = ToolRegistry(rig.engine)
    tools.add(ToolSpec("look", "http", url="http://127.0.0.1:9/a", schema={"type": "object"}))
    rig.registry.update_secretary("alice", AssistantUpdate(params={"tools": "look"}), draft=True)
    suite = _suite({"name": "a", "message": "m", "expect": [{"contains": "Alice"}]}, judge=False)
    assert rig.run(suite).failed == 0
    with rig.engine.begin() as conn:  # the tool changed since (a new URL)
        from secretaries_core.tools.table import TOOL_TABLE

        conn.execute(
            TOOL_TABLE.update().values(config={"url": "http://127.0.0.1:9/b", "schema": {}})
        )
    with pytest.raises(InvalidInput, match="older than its content"):
        rig.registry.rollout_start("alice", percent=10, require_eval=True)


def test_a_judged_canary_rolls_back_after_the_minimum_sample_and_not_before(
    rig: Rig, served: Any
) -> None:
    rig.registry.rollout_start(
        "alice",
        percent=100,
        min_messages=5,
        judge=Judging("Polite; never rude.", sample=100, max_fail_rate=0.3),
    )
    served[1].tag = "BAD "  # the candidate degrades
    first_bad = time.monotonic()
    states = []

    async def talk(user: int) -> None:
        await rig.orch.ahandle(user, "hello")
        await rig.orch.drain()  # its judgement done

    for user in range(101, 108):
        rig.orch.run_sync(talk(user))
        rig.orch.flush_usage()
        status = rig.registry.rollout_status("alice")
        states.append((status["candidate"]["judged"], status["state"]))
        if status["state"] == "rolled_back":
            break
    took = time.monotonic() - first_bad
    # Running while fewer than 5 replies were judged, rolled back at the 5th.
    assert states[:4] == [(n, "running") for n in range(1, 5)], states
    assert states[4] == (5, "rolled_back"), states
    status = rig.registry.rollout_status("alice")
    assert status["candidate"]["judge_fail_rate"] == 1.0
    assert "judge fail rate 1.00 above 0.3 over 5 judged" in status["reason"]
    print(f"\njudged canary: rolled back at {states[-1][0]} judged replies, "
          f"{took:.2f}s after the first bad reply")  # fmt: skip
