"""Replay: what a version would answer to real, stored conversations — nothing stored.

For up to K contexts of a secretary (most recently active first), the conversation's last
user message is asked of the version under test with the history before it (and the
running summary, if any), beside the answer stored then. It goes through the path's own
stages (fitting, the model with its fallbacks, the tool loop), so the version's tools are
offered: read-only tools run for real; any other call is answered with the result the
conversation stored for the same tool and arguments, else "not run in replay" — never
sent — and each such call is listed. At most `concurrency` conversations run at once,
each under the message deadline. The tokens are counted for that version under the
period `replay` (never in users' usage or quotas, never in rollout comparisons).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secretaries_core.context.base import Message
from secretaries_core.conversation import summaries
from secretaries_core.conversation.instances import SecretaryInstance, SecretarySnapshot
from secretaries_core.errors import InvalidInput, SecretariesError
from secretaries_core.llm.base import CallUsage

if TYPE_CHECKING:
    from secretaries_core.orchestrator import Orchestrator

DEFAULT_USERS = 10
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class Replayed:
    """One conversation replayed."""

    telegram_id: int
    question: str
    stored_answer: str | None
    answer: str | None
    error: str | None
    model: str
    # Side-effecting tool calls not sent: "name(args)", or "name(args): answered from the
    # stored conversation".
    not_run: list[str] = field(default_factory=list)

    def doc(self) -> dict[str, Any]:
        """The JSON shape of `replay --json` items."""
        out: dict[str, Any] = {
            "telegram_id": self.telegram_id,
            "question": self.question,
            "stored_answer": self.stored_answer,
            "candidate_answer": self.answer,
            "error": self.error,
            "model": self.model,
        }
        if self.not_run:
            out["not_run"] = self.not_run
        return out


def _last_exchange(messages: list[Message]) -> tuple[list[Message], str, str | None] | None:
    """(history before the last user message, that message, the answer stored after it)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            after = next(
                (
                    m.content
                    for m in messages[i + 1 :]
                    if m.role == "assistant" and not (m.metadata or {}).get("tool_calls")
                ),
                None,
            )
            return messages[:i], messages[i].content, after
    return None


def stored_results(messages: list[Message]) -> dict[tuple[str, str], str]:
    """The tool results a conversation stored, by `same_call(name, arguments)`."""
    from secretaries_core.tools.ledger import same_call

    calls: dict[str, tuple[str, str]] = {}
    found: dict[tuple[str, str], str] = {}
    for message in messages:
        meta = message.metadata or {}
        for call in meta.get("tool_calls") or []:
            function = call.get("function") or {}
            calls[str(call.get("id"))] = same_call(
                str(function.get("name", "")), str(function.get("arguments", ""))
            )
        if message.role == "tool":
            key = calls.get(str(meta.get("tool_call_id", "")))
            if key is not None:
                found[key] = message.content
    return found


def choose_version(name: str, rows: list[Any], version: int | None, what: str) -> Any:
    """Version `version` of the rows, else the newest draft or candidate."""
    if version is None:
        pending = [v for v in rows if v.state in ("candidate", "draft")]
        if not pending:
            raise InvalidInput(f"{name} has no draft or candidate to {what}; pass --version N")
        return pending[0]
    matching = [v for v in rows if v.version == version]
    if not matching:
        raise InvalidInput(f"{name} has no version {version}")
    return matching[0]


def version_instance(
    orchestrator: Orchestrator, secretary_id: uuid.UUID, name: str, chosen: Any
) -> SecretaryInstance:
    """A ready instance of one version (not pooled: replay and eval are one-offs)."""
    snapshot = SecretarySnapshot(
        secretary_id, name, chosen.model, chosen.prompt, dict(chosen.params), chosen.version
    )
    return SecretaryInstance(
        secretary=snapshot,
        adapter=orchestrator.adapter_for(snapshot),
        policy=orchestrator.settings.context_policy.for_secretary(snapshot.params),
    )


async def replay(
    orchestrator: Orchestrator,
    secretary: str,
    *,
    version: int | None = None,
    users: int = DEFAULT_USERS,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[Replayed]]:
    """(the version replayed, one result per conversation)."""
    if users < 1:
        raise InvalidInput(f"--users must be at least 1, got {users}")
    registry, store, hops = orchestrator.registry, orchestrator.store, orchestrator.hops
    found = await hops.run(registry.get_secretary, secretary)
    rows = await hops.run(registry.versions, found.id)
    chosen = choose_version(found.name, rows, version, "replay")
    instance = version_instance(orchestrator, found.id, found.name, chosen)

    def contexts() -> list[int]:
        picked = []
        for summary in store.iter_contexts(secretary_id=found.id):
            picked.append(summary.user_id)
            if len(picked) == users:
                break
        return picked

    chosen_users = await hops.run(contexts)
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(telegram_id: int) -> Replayed | None:
        nonlocal done
        async with gate:
            stored = await store.aread(telegram_id, found.id)
            running, history = summaries.split(stored)
            exchange = _last_exchange(history)
            if exchange is None:
                return None
            before, question, answer = exchange
            path = orchestrator.path
            turn = path.detached(telegram_id, question, instance, before, running)
            turn.tools_mode = "replay"
            turn.replayed = stored_results(history)
            result: str | None = None
            error: str | None = None
            try:
                async with asyncio.timeout(orchestrator.settings.model_timeout_seconds):
                    result = await path.ask_detached(turn)
            except TimeoutError:
                error = "no reply within the model deadline"
            except SecretariesError as exc:
                error = f"{type(exc).__name__}: {exc}"
            usage = turn.usage or CallUsage()
            orchestrator.versions.add(
                found.id,
                chosen.version,
                None,
                period="replay",
                messages=1,
                errors=0 if error is None else 1,
                prompt_tokens=usage.prompt_tokens or 0,
                completion_tokens=usage.completion_tokens or 0,
            )
            done += 1
            if progress is not None:
                progress(done, len(chosen_users))
            return Replayed(
                telegram_id,
                question,
                answer,
                result,
                error,
                usage.model or chosen.model,
                list(turn.not_run),
            )

    results = await asyncio.gather(*(one(u) for u in chosen_users))
    await hops.run(orchestrator.versions.flush)
    return chosen.version, [r for r in results if r is not None]
