"""The deterministic checks of a reply (`judge` is judge.py's): each gives a failure or None."""

from __future__ import annotations

import json
import re

from secretaries_core.evals.suite import Check


def failure(check: Check, reply: str) -> str | None:
    """Why `reply` fails `check` (one line), or None when it passes."""
    kind, value = check.kind, check.value
    if kind == "contains":
        return None if value in reply else f"does not contain {value[:80]!r}"
    if kind == "not_contains":
        return None if value not in reply else f"contains {value[:80]!r}"
    if kind == "regex":
        return None if re.search(value, reply) else f"does not match /{value[:80]}/"
    if kind == "max_chars":
        return None if len(reply) <= value else f"is {len(reply)} characters, over {value}"
    if kind == "json_schema":
        return _schema_failure(value, reply)
    raise ValueError(f"not a deterministic check: {kind}")


def _schema_failure(schema: dict[str, object], reply: str) -> str | None:
    import jsonschema

    try:
        document = json.loads(reply)
    except json.JSONDecodeError as exc:
        return f"is not JSON ({exc.msg} at character {exc.pos})"
    found = jsonschema.validators.validator_for(schema)(schema).iter_errors(document)
    first = next(iter(found), None)
    if first is None:
        return None
    where = "/".join(str(p) for p in first.absolute_path) or "the document"
    return f"does not match the schema at {where}: {first.message[:120]}"
