"""/api/tools: HTTP functions and MCP servers secretaries can call (the CLI's documents)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from secretaries_api.routes.common import Svc
from secretaries_core.errors import InvalidInput
from secretaries_core.tools.registry import ToolRegistry
from secretaries_core.tools.spec import DEFAULT_TIMEOUT_S, ToolSpec

router = APIRouter(prefix="/api/tools", tags=["tools"])


class ToolIn(BaseModel):
    """A tool to register: one of `http` (with `schema`), `mcp_url` or `mcp_command`."""

    name: str = Field(max_length=64)
    http: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    mcp_url: str | None = None
    mcp_command: str | None = Field(default=None, max_length=4000)
    description: str = Field(default="", max_length=4000)
    headers: dict[str, str] = Field(default_factory=dict)
    secret_env: str | None = None
    allow: list[str] = Field(default_factory=list)
    timeout: float | None = None
    confirm: bool = False
    read_only: bool = False

    def spec(self) -> ToolSpec:
        """The spec this body describes."""
        if sum(1 for where in (self.http, self.mcp_url, self.mcp_command) if where) != 1:
            raise InvalidInput("name exactly one of http, mcp_url or mcp_command")
        return ToolSpec(
            name=self.name,
            kind="http" if self.http else "mcp",
            url=self.http or self.mcp_url,
            command=self.mcp_command,
            description=self.description,
            schema=self.schema_,
            headers=self.headers,
            secret_env=self.secret_env,
            allow=tuple(self.allow),
            timeout=DEFAULT_TIMEOUT_S if self.timeout is None else self.timeout,
            timeout_set=self.timeout is not None,
            confirm=self.confirm,
            read_only=self.read_only,
        )


class CallIn(BaseModel):
    """One call: the arguments, and which of an MCP server's tools."""

    args: dict[str, Any] = Field(default_factory=dict)
    tool: str | None = None


@router.get("/", operation_id="list_tools")
def list_tools(svc: Svc) -> list[dict[str, Any]]:
    """Every registered tool."""
    return [t.as_dict() for t in ToolRegistry(svc.registry.engine).all()]


@router.post("/", status_code=status.HTTP_201_CREATED, operation_id="add_tool")
def add_tool(svc: Svc, body: ToolIn) -> dict[str, Any]:
    """Register a tool (secrets only as environment variable names)."""
    return ToolRegistry(svc.registry.engine).add(body.spec()).as_dict()


@router.get("/{name}", operation_id="get_tool")
async def get_tool(svc: Svc, name: str) -> dict[str, Any]:
    """One tool; an MCP server's tools are discovered now."""
    spec = await svc.orchestrator.hops.run(ToolRegistry(svc.registry.engine).get, name)
    doc = spec.as_dict()
    if spec.kind == "mcp":
        doc["tools"] = [t.as_dict() for t in await svc.tool_caller.mcp.list_tools(spec)]
    return doc


@router.delete("/{name}", operation_id="remove_tool")
def remove_tool(svc: Svc, name: str) -> dict[str, str]:
    """Delete a tool; 409 naming the secretaries' versions that still use it."""
    ToolRegistry(svc.registry.engine).remove(name)
    return {"removed": name}


@router.post("/{name}/call", operation_id="call_tool")
async def call_tool(svc: Svc, name: str, body: CallIn) -> dict[str, Any]:
    """Call the tool once; `ok` false and a one-line `result` when it failed."""
    spec = await svc.orchestrator.hops.run(ToolRegistry(svc.registry.engine).get, name)
    call_id = f"api-{uuid.uuid4().hex[:12]}:0:0"
    result = await svc.tool_caller.call(spec, body.args, call_id, body.tool)
    return {"tool": name, "call_id": call_id, "ok": result.ok, "result": result.text}
