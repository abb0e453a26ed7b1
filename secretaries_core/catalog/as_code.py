"""Catalog as code: the catalog as a YAML file, what applying one would change, and checks.

The file (`secretaries export` writes it):

    secretaries:
      - name: alice
        model: openai/gpt-4o-mini
        description: Cheerful
        default: true
        active: true
        params: {temperature: 0.2}
        tools: [calendar, search]
        eval: evals/alice.yaml          # a suite `apply` runs before a change lands
        prompt: |
          You are Alice, ...
      - name: researcher
        secretary: false                # an assistant users cannot pick (a tool's callee)
        model: openai/gpt-4o
        prompt: You research.

Prompts are block scalars so diffs of the file read well. A bad file — not YAML, an
unknown key, a bad name, a missing field, two defaults, the same name twice — is refused
with its line number, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from secretaries_core.errors import InvalidInput
from secretaries_core.tools.spec import tools_param

KEYS = (
    "name",
    "model",
    "prompt",
    "description",
    "params",
    "tools",
    "eval",
    "default",
    "active",
    "secretary",
)
REQUIRED = ("name", "model", "prompt")


class Stored(Protocol):
    """A secretary as stored: a `SecretaryDetail`, or a row of `catalog.reads.catalog_rows`."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def params(self) -> Any: ...
    @property
    def is_default(self) -> bool: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def is_secretary(self) -> bool: ...


@dataclass(frozen=True)
class Declared:
    """One secretary as the file declares it."""

    name: str
    model: str
    prompt: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    default: bool = False
    active: bool = True
    # False: an assistant users cannot pick (`create --no-secretary`).
    secretary: bool = True
    line: int = 0
    # An eval suite file for this secretary (relative to the catalog file): `apply` runs it
    # on the declared content of a changed secretary before anything is written.
    eval: str | None = None


@dataclass(frozen=True)
class PlannedChange:
    """One change `apply` would make."""

    action: str  # create | update | set_default | deactivate
    secretary: str
    fields: list[str]
    prompt_diff: str = ""
    # Why `apply` would refuse this change (then it writes nothing at all); "" when it
    # would make it. `plan` shows it, `apply` refuses on it: one code path.
    refused: str = ""
    # With `apply --canary`: the rollout the change started.
    rollout: str = ""

    def doc(self) -> dict[str, Any]:
        """The SPEC's JSON shape (with the prompt diff when the prompt changes)."""
        out: dict[str, Any] = {
            "action": self.action,
            "secretary": self.secretary,
            "fields": self.fields,
        }
        if self.prompt_diff:
            out["prompt_diff"] = self.prompt_diff
        if self.refused:
            out["refused"] = self.refused
        if self.rollout:
            out["rollout"] = self.rollout
        return out


def export(secretaries: Sequence[Stored]) -> str:
    """The catalog as YAML (every secretary, active or not, by name)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    items = [
        {
            "name": s.name,
            "model": s.model,
            "description": s.description,
            "default": s.is_default,
            "active": s.is_active,
            **({} if s.is_secretary else {"secretary": False}),
            "params": {k: v for k, v in s.params.items() if k != "tools"},
            **({"tools": tools_param(dict(s.params))} if tools_param(dict(s.params)) else {}),
            # A trailing newline keeps the block scalar's `|` clean (no `|-`).
            "prompt": s.prompt if s.prompt.endswith("\n") else s.prompt + "\n",
        }
        for s in sorted(secretaries, key=lambda s: s.name)
    ]
    dumped: str = yaml.dump(
        {"secretaries": items}, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return dumped


def parse(source: str) -> list[Declared]:
    """The secretaries a YAML text declares; `InvalidInput` naming the line when it is bad."""
    import yaml

    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InvalidInput(f"{where}not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise InvalidInput("line 1: the file must be a mapping with a `secretaries:` list")
    for key_node, _value in root.value:
        if key_node.value != "secretaries":
            raise InvalidInput(
                f"line {key_node.start_mark.line + 1}: unknown key {key_node.value!r} "
                "(the file has one key, `secretaries`)"
            )
    items_node = next((v for k, v in root.value if k.value == "secretaries"), None)
    items = data.get("secretaries")
    if not isinstance(items_node, yaml.SequenceNode) or not isinstance(items, list):
        raise InvalidInput("line 1: `secretaries:` must be a list of secretaries")
    declared = [_one(node, item) for node, item in zip(items_node.value, items, strict=True)]
    _check_all(declared)
    return declared


def _one(node: Any, item: Any) -> Declared:
    from secretaries_core.catalog.secretary_writes import (
        check_params,
        check_secretary_fields,
    )

    line = node.start_mark.line + 1
    if not isinstance(item, dict):
        raise InvalidInput(f"line {line}: each secretary is a mapping of {', '.join(KEYS)}")
    for key_node, _value in node.value:
        if key_node.value not in KEYS:
            raise InvalidInput(
                f"line {key_node.start_mark.line + 1}: unknown key {key_node.value!r}; "
                f"a secretary has {', '.join(KEYS)}"
            )
    for key in REQUIRED:
        if not isinstance(item.get(key), str):
            raise InvalidInput(f"line {line}: a secretary needs `{key}` (text)")
    params = item.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"line {line}: `params` must be a mapping")
    if "tools" in item:
        tools = item["tools"] or []
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise InvalidInput(f"line {line}: `tools` must be a list of tool names")
        params = {k: v for k, v in params.items() if k != "tools"}
        if tools:
            params["tools"] = ",".join(t.strip() for t in tools)
    for flag in ("default", "active", "secretary"):
        if flag in item and not isinstance(item[flag], bool):
            raise InvalidInput(f"line {line}: `{flag}` must be true or false")
    suite = item.get("eval")
    if suite is not None and (not isinstance(suite, str) or not suite.strip()):
        raise InvalidInput(f"line {line}: `eval` names a suite file")
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise InvalidInput(f"line {line}: `description` must be text")
    try:
        check_secretary_fields(item["name"], item["model"], item["prompt"], description)
        check_params(params)
    except InvalidInput as exc:
        raise InvalidInput(f"line {line}: {exc}") from None
    return Declared(
        name=item["name"],
        model=item["model"],
        prompt=item["prompt"],
        description=description,
        params=dict(params),
        default=bool(item.get("default", False)),
        active=bool(item.get("active", True)),
        secretary=bool(item.get("secretary", True)),
        line=line,
        eval=suite,
    )


def _check_all(declared: list[Declared]) -> None:
    seen: dict[str, Declared] = {}
    default: Declared | None = None
    for item in declared:
        other = seen.get(item.name.lower())
        if other is not None:
            raise InvalidInput(
                f"line {item.line}: {item.name!r} is declared twice (also on line {other.line})"
            )
        seen[item.name.lower()] = item
        if item.default:
            if default is not None:
                raise InvalidInput(
                    f"line {item.line}: two defaults, {default.name!r} (line {default.line}) "
                    f"and {item.name!r}; keep one"
                )
            if not item.active:
                raise InvalidInput(f"line {item.line}: the default secretary must be active")
            if not item.secretary:
                raise InvalidInput(
                    f"line {item.line}: an assistant users cannot pick (secretary: false) "
                    "cannot be the default"
                )
            default = item


def _same_prompt(a: str, b: str) -> bool:
    # A block scalar ends with a newline; a prompt typed on the command line does not.
    return a.rstrip("\n") == b.rstrip("\n")


def plan(
    declared: list[Declared], current: Sequence[Stored], *, prune: bool
) -> list[PlannedChange]:
    """What `apply` would change, in the order it would do it."""
    now = {s.name: s for s in current}
    changes: list[PlannedChange] = []
    for item in declared:
        found = now.get(item.name)
        if found is None:
            changes.append(PlannedChange("create", item.name, [*KEYS[1:5], "active"]))
            continue
        fields = []
        if item.model != found.model:
            fields.append("model")
        if not _same_prompt(item.prompt, found.prompt):
            fields.append("prompt")
        if item.params != dict(found.params):
            fields.append("params")
        if item.description != found.description:
            fields.append("description")
        if item.active != found.is_active:
            fields.append("active")
        if item.secretary != found.is_secretary:
            kind = "a secretary" if found.is_secretary else "an assistant users cannot pick"
            changes.append(
                PlannedChange(
                    "update",
                    item.name,
                    ["secretary"],
                    refused=f"{item.name!r} is {kind}; that cannot change (create another)",
                )
            )
            continue
        if fields:
            diff = ""
            if "prompt" in fields:
                from secretaries_core.catalog.reads import prompt_diff

                diff = prompt_diff(
                    found.prompt, item.prompt, f"{item.name} (now)", f"{item.name} (file)"
                )
            changes.append(PlannedChange("update", item.name, fields, diff))
    wanted = next((i.name for i in declared if i.default), None)
    current_default = next((s.name for s in current if s.is_default), None)
    if wanted is not None and wanted != current_default:
        changes.append(PlannedChange("set_default", wanted, ["default"]))
    if prune:
        named = {i.name for i in declared}
        default_after = wanted or current_default
        for s in current:
            if s.name not in named and s.is_active:
                refused = ""
                if s.name == default_after:
                    refused = (
                        f"{s.name!r} is the default and cannot be pruned; "
                        "name another default in the file"
                    )
                changes.append(PlannedChange("deactivate", s.name, ["active"], refused=refused))
    return changes
