"""Run a suite against one version: each case asked as a message would be, nothing stored.

A case goes through the same stages as a user's message — fitting, the model (with its
fallbacks), the tool loop — from the version's own prompt, model and params, with the
case's history in place of a stored context. Read-only tools run for real; any other call
is answered "not run in eval" and listed. Cases run concurrently (bounded). Usage is
counted for the version under the period `eval` (the judge's under `judge`), never in a
user's usage or a rollout's comparison. The result is kept as the version's latest eval.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from secretaries_core.context.base import Message
from secretaries_core.conversation.instances import SecretaryInstance, SecretarySnapshot
from secretaries_core.errors import SecretariesError
from secretaries_core.evals.checks import failure
from secretaries_core.evals.judge import count_judge_usage, judge
from secretaries_core.evals.replay import choose_version, version_instance
from secretaries_core.evals.suite import Case, Suite
from secretaries_core.llm.base import CallUsage, ModelAdapter

if TYPE_CHECKING:
    from secretaries_core.orchestrator import Orchestrator

DEFAULT_CONCURRENCY = 4
EVAL_USER = 0  # cases belong to no user


@dataclass
class CaseResult:
    """One case: its reply, and each check it failed (one line each)."""

    name: str
    reply: str
    failures: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return not self.failures

    def doc(self) -> dict[str, Any]:
        """The SPEC's case document."""
        out: dict[str, Any] = {
            "name": self.name,
            "passed": self.passed,
            "reply": self.reply,
            "failures": self.failures,
        }
        if self.not_run:
            out["not_run"] = self.not_run
        return out


@dataclass
class EvalResult:
    """A suite's outcome for one version."""

    secretary: str
    version: int
    cases: list[CaseResult]

    @property
    def passed(self) -> int:
        """Cases that passed."""
        return sum(1 for c in self.cases if c.passed)

    @property
    def failed(self) -> int:
        """Cases that failed."""
        return len(self.cases) - self.passed

    def doc(self) -> dict[str, Any]:
        """`eval --json`: `{"secretary", "version", "passed", "failed", "cases"}`."""
        return {
            "secretary": self.secretary,
            "version": self.version,
            "passed": self.passed,
            "failed": self.failed,
            "cases": [c.doc() for c in self.cases],
        }

    def failure_lines(self) -> list[str]:
        """`case: failure` for each failure, for messages and the gate."""
        return [f"{c.name}: {f}" for c in self.cases for f in c.failures]


def judge_adapter(orchestrator: Orchestrator, model: str) -> ModelAdapter:
    """The judge's model (with its provider), as any secretary's model is built."""
    snapshot = SecretarySnapshot(uuid.UUID(int=0), "judge", model, "", {}, 0)
    return orchestrator.adapter_for(snapshot)


async def run_eval(
    orchestrator: Orchestrator,
    secretary: str,
    suite: Suite,
    *,
    version: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Ask each case of `suite` of the version (default: the newest draft or candidate),
    check the replies, keep the result as the version's latest eval."""
    registry, hops = orchestrator.registry, orchestrator.hops
    found = await hops.run(registry.get_secretary, secretary)
    rows = await hops.run(registry.versions, found.id)
    chosen = choose_version(found.name, rows, version, "evaluate")
    return await _run(orchestrator, found.id, found.name, chosen, suite, concurrency, progress)


@dataclass(frozen=True)
class Declared:
    """Content not stored as a version yet (a catalog file's secretary before `apply`)."""

    model: str
    prompt: str
    params: dict[str, Any]
    version: int = 0  # its eval is kept under version 0 until `apply` numbers it


async def run_eval_declared(
    orchestrator: Orchestrator,
    secretary: str,
    model: str,
    prompt: str,
    params: dict[str, Any],
    suite: Suite,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> EvalResult:
    """`run_eval` on content a catalog file declares for an existing secretary; the result
    is kept under version 0, and a gate finds it by its content once `apply` stores it."""
    found = await orchestrator.hops.run(orchestrator.registry.get_secretary, secretary)
    declared = Declared(model, prompt, dict(params))
    return await _run(orchestrator, found.id, found.name, declared, suite, concurrency, None)


async def _run(
    orchestrator: Orchestrator,
    secretary_id: uuid.UUID,
    name: str,
    chosen: Any,
    suite: Suite,
    concurrency: int,
    progress: Callable[[int, int], None] | None,
) -> EvalResult:
    registry, hops = orchestrator.registry, orchestrator.hops
    instance = version_instance(orchestrator, secretary_id, name, chosen)
    judging = judge_adapter(orchestrator, suite.judge_model) if suite.judge_model else None
    gate = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(case: Case) -> CaseResult:
        nonlocal done
        async with gate:
            result = await _run_case(orchestrator, instance, case, judging)
        done += 1
        if progress is not None:
            progress(done, len(suite.cases))
        return result

    cases = await asyncio.gather(*(one(case) for case in suite.cases))
    outcome = EvalResult(name, chosen.version, list(cases))
    content = None if chosen.version else (chosen.model, chosen.prompt, chosen.params)
    await hops.run(
        registry.record_eval,
        secretary_id,
        chosen.version,
        content=content,
        passed=outcome.passed,
        failed=outcome.failed,
        failures=outcome.failure_lines(),
    )
    await hops.run(orchestrator.versions.flush)
    return outcome


async def _run_case(
    orchestrator: Orchestrator,
    instance: SecretaryInstance,
    case: Case,
    judging: ModelAdapter | None,
) -> CaseResult:
    secretary = instance.secretary
    at = datetime.now(UTC)
    history = [Message(role, content, at) for role, content in case.history]
    turn = orchestrator.path.detached(EVAL_USER, case.message, instance, history)
    turn.tools_mode = "eval"
    reply, error = "", None
    try:
        reply = await orchestrator.path.ask_detached(turn)
    except SecretariesError as exc:
        error = f"no reply: {type(exc).__name__}: {str(exc)[:200]}"
    usage = turn.usage or CallUsage()
    orchestrator.versions.add(
        secretary.id,
        secretary.version,
        None,
        period="eval",
        messages=1,
        errors=0 if error is None else 1,
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
    )
    result = CaseResult(case.name, reply, [error] if error else [], list(turn.not_run))
    if error is not None:
        return result
    for check in case.expect:
        if check.kind != "judge":
            why = failure(check, reply)
        else:
            assert judging is not None
            why = await _judged(orchestrator, judging, secretary, check.value, case, reply)
        if why is not None:
            result.failures.append(f"{check.label()}: {why}" if check.kind != "judge" else why)
    return result


async def _judged(
    orchestrator: Orchestrator,
    adapter: ModelAdapter,
    secretary: SecretarySnapshot,
    rubric: str,
    case: Case,
    reply: str,
) -> str | None:
    usage = CallUsage()
    try:
        async with asyncio.timeout(orchestrator.settings.model_timeout_seconds):
            verdict = await judge(adapter, rubric, case.history, case.message, reply, usage)
    except TimeoutError:
        return "judge: no verdict within the model deadline"
    except SecretariesError as exc:
        return f"judge: {str(exc)[:200]}"
    finally:
        count_judge_usage(orchestrator.versions, secretary.id, secretary.version, usage)
    return None if verdict.passed else f"judge: FAIL: {verdict.reason}"
