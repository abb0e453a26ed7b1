"""Catalog commands: create, update, list, show, set-default, deactivate, activate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, runtime
from secretaries_core.catalog.refs import parse_params
from secretaries_core.errors import InvalidInput

if TYPE_CHECKING:
    from secretaries_core.catalog.registry import Change
    from secretaries_core.catalog.schemas import SecretaryOut

SecArg = Annotated[str, typer.Argument(help="Secretary name or UUID.")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", metavar="KEY=VALUE", help="Model parameter; VALUE is JSON or text."),
]
ToolsOpt = Annotated[
    str | None,
    typer.Option(
        "--tools",
        metavar="A,B",
        help="The tools it may call (param tools; registered with `tools add`; '' for none).",
    ),
]
PromptFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--prompt-file", exists=True, dir_okay=False, readable=True, help="Read the prompt."
    ),
]


def _params(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    try:
        return parse_params(items)
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--param") from None


def _with_tools(
    params: dict[str, Any] | None, tools: str | None, *, removing: bool
) -> dict[str, Any] | None:
    """`params` with `--tools` as the `tools` param (an empty value: no tools)."""
    if tools is None:
        return params
    names = ",".join(n.strip() for n in tools.split(",") if n.strip())
    if not names and not removing:
        return params
    return {**(params or {}), "tools": names or None}


def _prompt(prompt: str | None, prompt_file: Path | None, *, required: bool) -> str | None:
    if prompt is not None and prompt_file is not None:
        raise typer.BadParameter("give --prompt or --prompt-file, not both", param_hint="--prompt")
    if prompt_file is not None:
        return prompt_file.read_text(encoding="utf-8")
    if prompt is None and required:
        raise typer.BadParameter("give --prompt TEXT or --prompt-file PATH", param_hint="--prompt")
    return prompt


def _print_secretaries(rows: list[SecretaryOut]) -> None:
    render.secretaries(row.model_dump() for row in rows)


def _report(change: Change, did: str, json: bool, ctx: typer.Context) -> None:
    if json:
        output.emit_json(runtime(ctx).registry().secretary_detail(change.secretary.id))
        return
    for line in render.change_lines(change.secretary.name, did, change.changed, change.moved_users):
        output.say(line)


def register(app: App) -> None:
    """Add the catalog commands to the root app."""

    @app.command("create")
    def create(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="Unique name of the secretary.")],
        model: Annotated[
            str, typer.Option("--model", help="Model, e.g. echo or openai/gpt-4o-mini.")
        ],
        prompt: Annotated[str | None, typer.Option("--prompt", help="The system prompt.")] = None,
        prompt_file: PromptFileOpt = None,
        description: Annotated[
            str, typer.Option("--description", help="One line for users choosing a secretary.")
        ] = "",
        param: ParamOpt = None,
        tools: ToolsOpt = None,
        default: Annotated[bool, typer.Option("--default", help="Make it the default.")] = False,
        no_secretary: Annotated[
            bool,
            typer.Option(
                "--no-secretary", help="An assistant users cannot pick (called as a tool)."
            ),
        ] = False,
        json: JsonFlag = False,
    ) -> None:
        """Add a secretary (or, with --no-secretary, an assistant) to the catalog.

        Example: secretaries create alice --model openai/gpt-4o-mini --prompt 'Be brief.' --default
        """
        from secretaries_core.catalog.reads import secretary_detail
        from secretaries_core.catalog.secretary_writes import NewSecretary, create
        from secretaries_core.plumbing.db import transaction
        from secretaries_core.plumbing.timeutil import utcnow

        text = _prompt(prompt, prompt_file, required=True)
        assert text is not None
        data = NewSecretary(
            name=name,
            model=model,
            prompt=text,
            description=description,
            params=_with_tools(_params(param) or {}, tools, removing=False) or {},
            is_default=default,
            is_secretary=not no_secretary,
        )
        data.check()  # before the database is opened
        # On Core, not the registry: nothing in this process listens for the change.
        taken = f"a secretary named {name!r} already exists"
        with transaction(runtime(ctx).engine(), write=True, conflict=taken) as conn:
            new_id = create(conn, data, utcnow())
            detail = secretary_detail(conn, str(new_id))
        if json:
            output.emit_json(detail)
        else:
            suffix = " (default)" if default else ""
            kind = "secretary" if not no_secretary else "assistant"
            output.say(f"Created {kind} {name}{suffix}, id {new_id}.")

    @app.command("update")
    def update(
        ctx: typer.Context,
        sec: SecArg,
        name: Annotated[str | None, typer.Option("--name", help="A new name (rename).")] = None,
        model: Annotated[
            str | None,
            typer.Option("--model", help="A new model: PROVIDER/MODEL (openai/… by default)."),
        ] = None,
        prompt: Annotated[str | None, typer.Option("--prompt", help="A new system prompt.")] = None,
        prompt_file: PromptFileOpt = None,
        description: Annotated[
            str | None, typer.Option("--description", help="A new one-line description.")
        ] = None,
        param: ParamOpt = None,
        tools: ToolsOpt = None,
        draft: Annotated[
            bool,
            typer.Option("--draft", help="Make the new version a draft: stored, not live."),
        ] = False,
        note: Annotated[
            str | None, typer.Option("--note", help="A note on the new version.")
        ] = None,
        json: JsonFlag = False,
    ) -> None:
        """Change a secretary; a change of model, prompt or params makes a new version.

        Example: secretaries update alice --prompt 'You are Alice, brief.' --note 'shorter' --draft
        """
        from secretaries_core.catalog.reads import secretary_detail
        from secretaries_core.catalog.secretary_writes import update_secretary
        from secretaries_core.plumbing.db import transaction
        from secretaries_core.plumbing.timeutil import utcnow

        changes = {
            "name": name,
            "model": model,
            "description": description,
            "prompt": _prompt(prompt, prompt_file, required=False),
            "params": _with_tools(_params(param), tools, removing=True),
        }
        # On Core, not the registry: nothing in this process listens for the change.
        changed = "the secretary changed concurrently; try again"
        with transaction(runtime(ctx).engine(), write=True, conflict=changed) as conn:
            done = update_secretary(conn, sec, changes, utcnow(), draft=draft, note=note)
            detail = secretary_detail(conn, str(done.id)) if json else None
        if detail is not None:
            output.emit_json(detail)
        elif done.changed and done.draft is not None:
            output.say(
                f"Draft version {done.draft} of {done.name} saved; "
                f"version {done.version} stays live."
            )
        elif done.changed:
            output.say(f"Updated {done.name}, now version {done.version}.")
        else:
            output.say(f"Nothing changed: {done.name} already has these values.")

    @app.command("list")
    def list_(
        ctx: typer.Context,
        all_: Annotated[bool, typer.Option("--all", help="Include inactive secretaries.")] = False,
        assistants: Annotated[
            bool,
            typer.Option("--assistants", help="Every assistant, not only those users pick."),
        ] = False,
        json: JsonFlag = False,
    ) -> None:
        """List active secretaries (all with --all; every assistant with --assistants).

        Example: secretaries list --all --json
        """
        rows = (
            runtime(ctx).registry().list_secretaries(include_inactive=all_, assistants=assistants)
        )
        if json:
            output.emit_json(rows)
        elif not rows:
            output.say("No secretaries yet; add one with `secretaries create`.")
        else:
            _print_secretaries(rows)

    @app.command("show")
    def show(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """Show one secretary with its prompt and number of users.

        Example: secretaries show alice --json
        """
        detail = runtime(ctx).registry().secretary_detail(sec)
        if json:
            output.emit_json(detail)
            return
        _print_secretaries([detail])
        output.say(f"id: {detail.id}")
        output.say(f"params: {detail.params}")
        output.say(
            f"created: {detail.created_at.isoformat()}  updated: {detail.updated_at.isoformat()}"
        )
        output.say("prompt:")
        output.say(detail.prompt)

    @app.command("set-default")
    def set_default(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """Make SEC the default secretary.

        Example: secretaries set-default alice
        """
        _report(runtime(ctx).registry().set_default(sec), "the default", json, ctx)

    @app.command("deactivate")
    def deactivate(
        ctx: typer.Context,
        sec: SecArg,
        reassign_to: Annotated[
            str | None,
            typer.Option("--reassign-to", metavar="SEC2", help="Move its users to SEC2 first."),
        ] = None,
        json: JsonFlag = False,
    ) -> None:
        """Deactivate SEC (never the default); its users fall back to the default unless moved.

        Example: secretaries deactivate bob --reassign-to alice
        """
        change = runtime(ctx).registry().deactivate(sec, reassign_to=reassign_to)
        _report(change, "deactivated", json, ctx)

    @app.command("delete")
    def delete(
        ctx: typer.Context,
        sec: SecArg,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
        json: JsonFlag = False,
    ) -> None:
        """Delete SEC if no user was ever linked to it (otherwise deactivate it).

        Example: secretaries delete bob --yes
        """
        from secretaries_cli import plain
        from secretaries_core.errors import InvalidInput

        if not output.confirmed(f"Delete secretary {sec} and its contexts?", yes=yes):
            raise InvalidInput("nothing deleted: confirm on a terminal or pass --yes")
        plain.delete_secretary(runtime(ctx), sec, json)

    @app.command("activate")
    def activate(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """Make SEC available again.

        Example: secretaries activate bob
        """
        _report(runtime(ctx).registry().activate(sec), "activated", json, ctx)
