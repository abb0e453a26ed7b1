"""`tools`: HTTP functions and MCP servers that secretaries can call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, new_app, runtime

app = new_app("Tools secretaries can call: HTTP functions and MCP servers.")
NameArg = Annotated[str, typer.Argument(help="The tool's name.")]


def register(root: App) -> None:
    """Add the `tools` group to the root app."""
    root.add_typer(app, name="tools")


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    from secretaries_core.errors import InvalidInput

    found = {}
    for value in values or []:
        name, sep, env = value.partition("=")
        if not sep or not name or not env:
            raise InvalidInput(f"{option} takes NAME=ENVVAR, got {value[:60]!r}")
        found[name] = env
    return found


@app.command("add")
def add(
    ctx: typer.Context,
    name: NameArg,
    http: Annotated[
        str | None, typer.Option("--http", metavar="URL", help="An HTTP function: POST URL.")
    ] = None,
    schema: Annotated[
        Path | None,
        typer.Option("--schema", metavar="FILE", help="JSON Schema of an HTTP tool's arguments."),
    ] = None,
    mcp_url: Annotated[
        str | None,
        typer.Option("--mcp-url", metavar="URL", help="An MCP server over Streamable HTTP."),
    ] = None,
    mcp_command: Annotated[
        str | None,
        typer.Option("--mcp-command", metavar="CMD", help="An MCP server over stdio."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What the model is told it does.")
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", metavar="NAME=ENVVAR", help="A header from an env variable."),
    ] = None,
    secret_env: Annotated[
        str | None,
        typer.Option("--secret-env", metavar="VAR", help="Sign HTTP calls with $VAR (HMAC)."),
    ] = None,
    allow: Annotated[
        str | None,
        typer.Option("--allow", metavar="T1,T2", help="Offer only these of an MCP server's tools."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="The call's own timeout (default 30, or the secretary's tool_timeout).",
        ),
    ] = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="The user approves each call.")
    ] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="No side effects: may run in replay and eval.")
    ] = False,
    assistant: Annotated[
        str | None,
        typer.Option("--assistant", metavar="A", help="Another assistant, asked as a tool."),
    ] = None,
    history: Annotated[
        str,
        typer.Option(
            "--history",
            metavar="none|last|all",
            help="What the assistant is shown besides the message.",
        ),
    ] = "none",
    json: JsonFlag = False,
) -> None:
    """Register a tool (secrets only as env variable names).

    Example: secretaries tools add calendar --mcp-command "python calendar_server.py"
    """
    from secretaries_core.errors import InvalidInput
    from secretaries_core.tools.registry import ToolRegistry
    from secretaries_core.tools.spec import DEFAULT_TIMEOUT_S, ToolSpec, parse_schema

    kinds = [
        k
        for k, v in (
            ("--http", http),
            ("--mcp-url", mcp_url),
            ("--mcp-command", mcp_command),
            ("--assistant", assistant),
        )
        if v
    ]
    if len(kinds) != 1:
        raise InvalidInput(
            "name exactly one of --http URL, --mcp-url URL, --mcp-command CMD or --assistant A"
        )
    parsed = None
    if schema is not None:
        try:
            text = schema.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read --schema {schema}: {exc.strerror}") from None
        parsed = parse_schema(text, str(schema))
    spec = ToolSpec(
        name=name,
        kind="http" if http else "assistant" if assistant else "mcp",
        url=http or mcp_url,
        command=mcp_command,
        description=description or "",
        schema=parsed,
        headers=_pairs(header, "--header"),
        secret_env=secret_env,
        allow=tuple(t.strip() for t in (allow or "").split(",") if t.strip()),
        timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout,
        timeout_set=timeout is not None,
        confirm=confirm,
        read_only=read_only,
        assistant=assistant,
        history=history,
    )
    added = ToolRegistry(runtime(ctx).engine()).add(spec)
    if json:
        output.emit_json(added.as_dict())
    else:
        output.say(f"Tool {added.name} ({added.kind}) added.")


@app.command("list")
def list_(ctx: typer.Context, json: JsonFlag = False) -> None:
    """The registered tools.

    Example: secretaries tools list --json
    """
    from secretaries_core.tools.registry import ToolRegistry

    found = ToolRegistry(runtime(ctx).engine()).all()
    if json:
        output.emit_json([t.as_dict() for t in found])
        return
    render.tools(found)


@app.command("show")
def show(ctx: typer.Context, name: NameArg, json: JsonFlag = False) -> None:
    """One tool; an MCP server's tools are discovered now.

    Example: secretaries tools show calendar --json
    """
    import asyncio

    from secretaries_core.tools.calling import ToolCaller
    from secretaries_core.tools.registry import ToolRegistry

    spec = ToolRegistry(runtime(ctx).engine()).get(name)
    doc: dict[str, Any] = spec.as_dict()
    if spec.kind == "mcp":

        async def discover() -> list[dict[str, Any]]:
            caller = ToolCaller()
            try:
                return [t.as_dict() for t in await caller.mcp.list_tools(spec)]
            finally:
                await caller.aclose()

        doc["tools"] = asyncio.run(discover())
    if json:
        output.emit_json(doc)
        return
    render.tool(doc)


@app.command("remove")
def remove(ctx: typer.Context, name: NameArg) -> None:
    """Delete a tool (refused while any version of any secretary uses it).

    Example: secretaries tools remove calendar
    """
    from secretaries_core.tools.registry import ToolRegistry

    ToolRegistry(runtime(ctx).engine()).remove(name)
    output.say(f"Tool {name} removed.")


@app.command("call")
def call(
    ctx: typer.Context,
    name: NameArg,
    args: Annotated[str, typer.Option("--args", metavar="JSON", help="The arguments.")],
    tool: Annotated[
        str | None, typer.Option("--tool", metavar="T", help="Which of an MCP server's tools.")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Call a tool once and print its result (exit 1 when the call failed).

    Example: secretaries tools call calendar --tool list_events --args '{"day": "2026-12-04"}'
    """
    from secretaries_cli import plain

    plain.call_tool(runtime(ctx), name, args, tool, json)
