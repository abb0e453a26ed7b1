"""`replay --judge`: the judge compares each candidate answer with the stored live one.

For every replayed conversation with both answers, the judge says which is better by the
rubric — the candidate (a win), the live answer (a loss) or neither (a tie). A verdict it
gives in no readable form is counted apart (`unreadable`), never as a win. The judge's
tokens count under the period `judge` of the candidate version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secretaries_core.errors import SecretariesError
from secretaries_core.evals.judge import compare, count_judge_usage
from secretaries_core.evals.runner import judge_adapter
from secretaries_core.llm.base import CallUsage

if TYPE_CHECKING:
    from secretaries_core.evals.replay import Replayed
    from secretaries_core.orchestrator import Orchestrator

OUTCOME = {"A": "win", "B": "loss", "TIE": "tie"}


@dataclass
class Compared:
    """Wins, ties and losses of the candidate, and each conversation's verdict."""

    verdicts: list[str | None] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """`{"wins", "ties", "losses", "unreadable"}`."""
        return {
            "wins": self.verdicts.count("win"),
            "ties": self.verdicts.count("tie"),
            "losses": self.verdicts.count("loss"),
            "unreadable": self.verdicts.count("unreadable"),
        }


async def judge_replay(
    orchestrator: Orchestrator,
    secretary: str,
    version: int,
    results: list[Replayed],
    rubric: str,
    model: str | None = None,
    concurrency: int = 4,
) -> Compared:
    """The judge's verdict on each of `results` (None where there is nothing to compare)."""
    found = await orchestrator.hops.run(orchestrator.registry.get_secretary, secretary)
    rows = await orchestrator.hops.run(orchestrator.registry.versions, found.id)
    candidate = next(v for v in rows if v.version == version)
    adapter = judge_adapter(orchestrator, model or candidate.model)
    gate = asyncio.Semaphore(concurrency)

    async def one(result: Replayed) -> str | None:
        if result.answer is None or result.stored_answer is None:
            return None
        usage = CallUsage()
        async with gate:
            try:
                async with asyncio.timeout(orchestrator.settings.model_timeout_seconds):
                    said = await compare(
                        adapter,
                        rubric,
                        result.question,
                        result.answer,
                        result.stored_answer,
                        usage,
                    )
                verdict: str = OUTCOME[said]
            except (SecretariesError, TimeoutError):
                verdict = "unreadable"
            finally:
                count_judge_usage(orchestrator.versions, found.id, version, usage)
        return verdict

    verdicts = await asyncio.gather(*(one(r) for r in results))
    await orchestrator.hops.run(orchestrator.versions.flush)
    return Compared(list(verdicts))


def with_verdicts(docs: list[dict[str, Any]], compared: Compared) -> list[dict[str, Any]]:
    """`replay --json` conversations, each with its `verdict`."""
    return [{**doc, "verdict": v} for doc, v in zip(docs, compared.verdicts, strict=True)]
