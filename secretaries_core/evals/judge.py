"""The judge: a model that reads a reply against a rubric and answers PASS or FAIL.

Its answer is read strictly: the first non-empty line must start with `PASS` or `FAIL`
(upper case), optionally followed by `:` and a one-line reason. Anything else is
`Unreadable` — an error, never a pass. Comparing two replies (`replay --judge`) the first
line must be `A`, `B` or `TIE`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from secretaries_core.errors import SecretariesError
from secretaries_core.llm.base import CallUsage, ChatRequest, ModelAdapter

VERDICT = re.compile(r"(PASS|FAIL)\b[ \t]*[:-]?[ \t]*(.*)")
PREFERENCE = re.compile(r"(A|B|TIE)\b[ \t]*[:-]?[ \t]*(.*)")
MAX_SHOWN = 8000

JUDGE_PROMPT = (
    "You grade one reply of an assistant against a rubric. Read the conversation and the "
    "reply, then answer on the first line with exactly PASS or FAIL, a colon, and a short "
    "reason on the same line. Write nothing before it."
)
COMPARE_PROMPT = (
    "You compare two replies of an assistant to the same message against a rubric. Answer "
    "on the first line with exactly A (reply A is better), B (reply B is better) or TIE, a "
    "colon, and a short reason on the same line. Write nothing before it."
)


def count_judge_usage(counts: Any, secretary_id: uuid.UUID, version: int, usage: CallUsage) -> None:
    """Count one judge call for the version judged, under the period `judge` (never in a
    user's usage or a rollout's comparison)."""
    counts.add(
        secretary_id,
        version,
        None,
        period="judge",
        messages=1,
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
    )


class Unreadable(SecretariesError):
    """The judge's answer is not a verdict."""


@dataclass(frozen=True)
class Verdict:
    """PASS or FAIL, with the judge's reason."""

    passed: bool
    reason: str


def read_verdict(text: str) -> Verdict:
    """The verdict in the judge's answer; `Unreadable` when there is none."""
    first = _first_line(text)
    found = VERDICT.fullmatch(first)
    if found is None:
        raise Unreadable(f"the judge's verdict could not be read: {first[:80]!r}")
    return Verdict(found.group(1) == "PASS", found.group(2).strip()[:300])


def read_preference(text: str) -> str:
    """`A`, `B` or `TIE` from the judge's answer; `Unreadable` otherwise."""
    first = _first_line(text)
    found = PREFERENCE.fullmatch(first)
    if found is None:
        raise Unreadable(f"the judge's preference could not be read: {first[:80]!r}")
    return found.group(1)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _said(history: list[tuple[str, str]], message: str) -> str:
    lines = [f"{role}: {content}" for role, content in history]
    lines.append(f"user: {message}")
    return "\n".join(lines)[-MAX_SHOWN:]


async def _ask(adapter: ModelAdapter, prompt: str, text: str, usage: CallUsage) -> str:
    request = ChatRequest("judge", prompt, [], [text], {"temperature": 0})
    return "".join([p async for p in adapter.pieces(request, stream=False, usage=usage)])


async def judge(
    adapter: ModelAdapter,
    rubric: str,
    history: list[tuple[str, str]],
    message: str,
    reply: str,
    usage: CallUsage,
) -> Verdict:
    """PASS or FAIL for `reply` to `message` (after `history`) by `rubric`."""
    text = (
        f"Rubric: {rubric}\n\nConversation:\n{_said(history, message)}\n\n"
        f"Reply to grade:\n{reply[:MAX_SHOWN]}"
    )
    return read_verdict(await _ask(adapter, JUDGE_PROMPT, text, usage))


async def compare(
    adapter: ModelAdapter, rubric: str, message: str, a: str, b: str, usage: CallUsage
) -> str:
    """Which of replies `a` and `b` to `message` is better by `rubric`: A, B or TIE."""
    text = (
        f"Rubric: {rubric}\n\nMessage:\n{message[:MAX_SHOWN]}\n\n"
        f"Reply A:\n{a[:MAX_SHOWN]}\n\nReply B:\n{b[:MAX_SHOWN]}"
    )
    return read_preference(await _ask(adapter, COMPARE_PROMPT, text, usage))
