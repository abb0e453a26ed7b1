"""What a registered tool is: its kind, where it lives, its limits, and its JSON document."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from secretaries_core.errors import InvalidInput
from secretaries_core.redact import mask_url

Kind = Literal["http", "mcp", "assistant"]
KINDS: tuple[Kind, ...] = ("http", "mcp", "assistant")
HISTORIES = ("none", "last", "all")  # what an assistant asked as a tool is shown
# What the model passes an assistant asked as a tool.
ASSISTANT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"message": {"type": "string", "description": "What to ask the assistant."}},
    "required": ["message"],
}
# A tool's name is part of the function names the model is offered (`NAME` or `NAME__TOOL`
# for an MCP server's tools), which OpenAI limits to [A-Za-z0-9_-]{1,64}.
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
HEADER_RE = re.compile(r"[A-Za-z0-9-]{1,64}")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class ToolSpec:
    """One registered tool. Secrets are never held here: only environment variable names."""

    name: str
    kind: Kind
    url: str | None = None  # http: the function's URL; mcp: a Streamable HTTP server
    command: str | None = None  # mcp over stdio: the command line
    description: str = ""
    schema: dict[str, Any] | None = None  # http: JSON Schema of the arguments
    headers: dict[str, str] = field(default_factory=dict)  # header name -> env var name
    secret_env: str | None = None  # http: HMAC key's env var (X-Secretaries-Signature)
    allow: tuple[str, ...] = ()  # mcp: the server's tools offered (all when empty)
    assistant: str | None = None  # assistant: the assistant asked (its name)
    history: str = "none"  # assistant: none, the user's last message, or all the history
    timeout: float = DEFAULT_TIMEOUT_S
    # Set by `--timeout`: then it wins over the secretary's `tool_timeout` param.
    timeout_set: bool = False
    confirm: bool = False  # the user approves each call
    read_only: bool = False  # no side effects: may run in replay and eval
    created_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (`tools show --json`, `GET /api/tools/{name}`)."""
        return {
            "name": self.name,
            "kind": self.kind,
            **self.config(),
            "url": mask_url(self.url) if self.url else None,
            "timeout": self.timeout,
            "confirm": self.confirm,
            "read_only": self.read_only,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

    def config(self) -> dict[str, Any]:
        """What the table keeps beside the columns (url, command, schema, ...)."""
        return {
            "url": self.url,
            "command": self.command,
            "description": self.description,
            "schema": self.schema,
            "headers": dict(self.headers),
            "secret_env": self.secret_env,
            "allow": list(self.allow),
            "timeout_set": self.timeout_set,
            **({"assistant": self.assistant, "history": self.history} if self.assistant else {}),
        }

    def timeout_for(self, tool_timeout: float | None) -> float:
        """The call's timeout: its own `--timeout` when set, else the secretary's
        `tool_timeout`, else the default."""
        if self.timeout_set or tool_timeout is None:
            return self.timeout
        return tool_timeout

    def validated(self) -> ToolSpec:
        """This spec, or `InvalidInput` saying what is wrong with it."""
        if not NAME_RE.fullmatch(self.name) or "__" in self.name:
            raise InvalidInput(
                f"invalid tool name {self.name[:70]!r}: 1-32 ASCII letters, digits, '-' and "
                "single '_', starting with a letter"
            )
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown tool kind {self.kind!r}: use http, mcp or assistant")
        if not 0 < self.timeout <= MAX_TIMEOUT_S:
            raise InvalidInput(f"--timeout must be between 0 and {MAX_TIMEOUT_S:g} seconds")
        if self.kind == "assistant":
            if not self.assistant:
                raise InvalidInput("an assistant tool needs --assistant NAME")
            if self.history not in HISTORIES:
                raise InvalidInput(f"--history must be one of {', '.join(HISTORIES)}")
            if self.url or self.command or self.schema or self.allow or self.secret_env:
                raise InvalidInput("--assistant takes no URL, command, schema, --allow or secret")
        elif self.kind == "http":
            _http_url(self.url, "--http")
            if not isinstance(self.schema, dict) or self.schema.get("type", "object") != "object":
                raise InvalidInput("an http tool needs --schema FILE: a JSON Schema object")
            if self.allow:
                raise InvalidInput("--allow is for MCP servers")
        else:
            if bool(self.url) == bool(self.command):
                raise InvalidInput("an MCP tool needs one of --mcp-url URL or --mcp-command CMD")
            if self.url:
                _http_url(self.url, "--mcp-url")
            if self.command:
                try:
                    if not shlex.split(self.command):
                        raise ValueError("empty")
                except ValueError as exc:
                    raise InvalidInput(f"--mcp-command cannot be parsed: {exc}") from None
            if self.secret_env:
                raise InvalidInput("--secret-env signs http tools; MCP servers take --header")
        for header, env in self.headers.items():
            if not HEADER_RE.fullmatch(header) or not ENV_RE.fullmatch(env):
                raise InvalidInput(f"--header takes NAME=ENVVAR, got {header[:40]}={env[:40]}")
        if self.secret_env is not None and not ENV_RE.fullmatch(self.secret_env):
            raise InvalidInput(f"--secret-env takes a variable name, got {self.secret_env[:40]!r}")
        for tool in self.allow:
            if not tool or len(tool) > 64:
                raise InvalidInput(f"--allow takes tool names, got {tool[:70]!r}")
        return self


def _http_url(url: str | None, option: str) -> None:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{option} takes an http(s) URL, got {mask_url(url or '')!r}")
    if parts.password:
        raise InvalidInput(f"{option}: put secrets in environment variables, not in the URL")


def parse_schema(text: str, where: str) -> dict[str, Any]:
    """A JSON Schema object read from `where` (a file), or `InvalidInput`."""
    try:
        found = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where} is not JSON: {exc}") from None
    if not isinstance(found, dict):
        raise InvalidInput(f"{where} must hold a JSON Schema object")
    return found


# A secretary's param naming the tools it may call (comma-separated, or a list).
PARAM_TOOLS = "tools"


def tools_param(params: Any) -> list[str]:
    """The tool names a secretary's params name (`tools: "a,b"` or `tools: [a, b]`)."""
    raw = params.get(PARAM_TOOLS) if isinstance(params, dict) else None
    if isinstance(raw, str):
        return [name.strip() for name in raw.split(",") if name.strip()]
    if isinstance(raw, list):
        return [str(name).strip() for name in raw if str(name).strip()]
    return []


# A version's tool loop params (read by the tool loop, checked when a version is stored).
PARAM_MAX_TOOL_ROUNDS = "max_tool_rounds"
PARAM_TOOL_TIMEOUT = "tool_timeout"
DEFAULT_MAX_TOOL_ROUNDS = 5


def max_rounds(params: Mapping[str, Any]) -> int:
    """The version's `max_tool_rounds` (default 5)."""
    return int(_number(params, PARAM_MAX_TOOL_ROUNDS, DEFAULT_MAX_TOOL_ROUNDS, int))


def tool_timeout(params: Mapping[str, Any]) -> float | None:
    """The version's `tool_timeout` (seconds), if set."""
    if params.get(PARAM_TOOL_TIMEOUT) in (None, ""):
        return None
    return float(_number(params, PARAM_TOOL_TIMEOUT, 0, float))


def _number(params: Mapping[str, Any], key: str, default: Any, kind: Any) -> Any:
    raw = params.get(key)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = -1
    if isinstance(raw, bool) or value < 0 or (kind is float and value == 0):
        raise InvalidInput(f"secretary param {key} must be a positive number, got {raw!r}")
    return value
