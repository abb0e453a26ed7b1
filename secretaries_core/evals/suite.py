"""An eval suite: cases (an optional history, a message) and what each reply must satisfy.

The YAML file (or the same document as JSON over REST):

    judge_model: openai/gpt-4o-mini      # needed by `judge` checks
    cases:
      - name: greets
        history: [{role: user, content: hi}, {role: assistant, content: Hello!}]
        message: Who are you?
        expect:
          - contains: Alice
          - not_contains: "As an AI"
          - regex: "(?i)secretary"
          - max_chars: 400
          - json_schema: {type: object}        # the reply parsed as JSON must match
          - judge: "Answers in one friendly sentence."

A bad suite is refused whole, naming the case and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from secretaries_core.errors import InvalidInput

KINDS = ("contains", "not_contains", "regex", "max_chars", "json_schema", "judge")
ROLES = ("user", "assistant")
MAX_CASES = 1000


@dataclass(frozen=True)
class Check:
    """One expectation of a reply: its kind and its argument."""

    kind: str
    value: Any

    def label(self) -> str:
        """How a failure names the check."""
        shown = self.value if not isinstance(self.value, dict) else "{…}"
        return f"{self.kind}: {str(shown)[:80]}"


@dataclass(frozen=True)
class Case:
    """One question asked of the version, with the conversation before it."""

    name: str
    message: str
    history: list[tuple[str, str]] = field(default_factory=list)
    expect: list[Check] = field(default_factory=list)


@dataclass(frozen=True)
class Suite:
    """The cases, and the model that judges `judge` checks."""

    cases: list[Case]
    judge_model: str | None = None

    @property
    def judged(self) -> bool:
        """True when a case has a `judge` check."""
        return any(c.kind == "judge" for case in self.cases for c in case.expect)


def parse_suite(text: str, where: str) -> Suite:
    """The suite a YAML text holds; `InvalidInput` naming what is wrong."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        raise InvalidInput(f"{where}:{line} not valid YAML") from None
    return suite_from_doc(doc, where)


def suite_from_doc(doc: Any, where: str = "the suite") -> Suite:
    """The suite a parsed document holds; `InvalidInput` naming what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list) or not doc["cases"]:
        raise InvalidInput(f"{where}: a suite is a mapping with a non-empty `cases` list")
    unknown = set(doc) - {"cases", "judge_model"}
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    judge_model = doc.get("judge_model")
    if judge_model is not None and (not isinstance(judge_model, str) or not judge_model.strip()):
        raise InvalidInput(f"{where}: `judge_model` must be a model name")
    if len(doc["cases"]) > MAX_CASES:
        raise InvalidInput(f"{where}: at most {MAX_CASES} cases")
    cases = [_case(item, i, where) for i, item in enumerate(doc["cases"], start=1)]
    names = [c.name for c in cases]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(f"{where}: case name(s) used twice: {', '.join(twice)}")
    suite = Suite(cases, judge_model)
    if suite.judged and judge_model is None:
        raise InvalidInput(f"{where}: `judge` checks need `judge_model: MODEL` in the suite")
    return suite


def _case(item: Any, number: int, where: str) -> Case:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: case {number} must be a mapping")
    name = item.get("name")
    label = f"{where}: case {number}" + (f" ({name})" if isinstance(name, str) else "")
    unknown = set(item) - {"name", "history", "message", "expect"}
    if unknown:
        raise InvalidInput(f"{label}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{label}: needs a `name`")
    message = item.get("message")
    if not isinstance(message, str) or not message.strip():
        raise InvalidInput(f"{label}: needs a `message` (text)")
    history = []
    for turn in item.get("history") or []:
        role = turn.get("role") if isinstance(turn, dict) else None
        content = turn.get("content") if isinstance(turn, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise InvalidInput(
                f"{label}: each history item is {{role: user|assistant, content: TEXT}}"
            )
        history.append((role, content))
    expect = item.get("expect") or []
    if not isinstance(expect, list) or not expect:
        raise InvalidInput(f"{label}: needs `expect`, a list of checks")
    return Case(name, message, history, [_check(c, label) for c in expect])


def _check(item: Any, label: str) -> Check:
    if not isinstance(item, dict) or len(item) != 1:
        raise InvalidInput(f"{label}: each check is one of {', '.join(KINDS)} with its value")
    ((kind, value),) = item.items()
    if kind not in KINDS:
        raise InvalidInput(f"{label}: unknown check {kind!r}; use one of {', '.join(KINDS)}")
    if kind in ("contains", "not_contains", "judge") and (not isinstance(value, str) or not value):
        raise InvalidInput(f"{label}: `{kind}` takes text")
    if kind == "regex":
        if not isinstance(value, str):
            raise InvalidInput(f"{label}: `regex` takes a regular expression")
        try:
            re.compile(value)
        except re.error as exc:
            raise InvalidInput(f"{label}: `regex` does not compile: {exc}") from None
    if kind == "max_chars" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(f"{label}: `max_chars` takes a positive whole number")
    if kind == "json_schema":
        if not isinstance(value, dict):
            raise InvalidInput(f"{label}: `json_schema` takes a JSON Schema object")
        import jsonschema

        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            raise InvalidInput(
                f"{label}: `json_schema` is not a valid schema: {exc.message}"
            ) from None
    return Check(kind, value)
