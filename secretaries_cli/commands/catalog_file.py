"""Catalog as code: export, plan, apply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, runtime
from secretaries_core.errors import InvalidInput

FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A catalog YAML file.")
]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Deactivate secretaries the file no longer has.")
]


def _read(path: Path) -> list[object]:
    from secretaries_core.catalog.as_code import parse

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    try:
        return list(parse(text))
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def _show(changes: list[object], json: bool, *, done: bool) -> None:
    docs = [c.doc() for c in changes]  # type: ignore[attr-defined]
    if json:
        output.emit_json({"changes": docs})
        return
    if not docs:
        output.say("No changes: the catalog matches the file.")
        return
    for doc in docs:
        output.say(f"{doc['action']} {doc['secretary']}: {', '.join(doc['fields'])}")
        if doc.get("prompt_diff"):
            output.say(doc["prompt_diff"])
    output.say(f"{len(docs)} change(s) {'applied' if done else 'planned'}.")


def register(app: App) -> None:
    """Add export, plan and apply to the root app."""

    @app.command("export")
    def export(
        ctx: typer.Context,
        out: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
        ] = None,
    ) -> None:
        """Write the catalog as YAML (prompts as block scalars).

        Example: secretaries export --output catalog.yaml
        """
        from secretaries_core.catalog.as_code import export as dump

        registry = runtime(ctx).registry()
        rows = [
            registry.secretary_detail(s.id)
            for s in registry.list_secretaries(include_inactive=True)
        ]
        text = dump(rows)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text, encoding="utf-8")

    @app.command("plan")
    def plan(
        ctx: typer.Context, file: FileArg, prune: PruneOpt = False, json: JsonFlag = False
    ) -> None:
        """Show what `apply FILE` would change; nothing is written.

        Example: secretaries plan catalog.yaml --prune
        """
        declared = _read(file)
        _show(runtime(ctx).registry().plan_catalog(declared, prune=prune), json, done=False)  # type: ignore[arg-type]

    @app.command("apply")
    def apply(
        ctx: typer.Context,
        file: FileArg,
        prune: PruneOpt = False,
        canary: Annotated[
            int | None,
            typer.Option(
                "--canary", min=0, max=100, help="Roll changed versions out to P% instead."
            ),
        ] = None,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
        json: JsonFlag = False,
    ) -> None:
        """Make the catalog what FILE says, in one transaction.

        Example: secretaries apply catalog.yaml --canary 10 --yes
        """
        declared = _read(file)
        registry = runtime(ctx).registry()
        planned = registry.plan_catalog(declared, prune=prune)  # type: ignore[arg-type]
        if planned and not yes and not json and sys.stdin.isatty():
            _show(list(planned), False, done=False)
            if not typer.confirm("Apply these changes?"):
                raise typer.Exit(1)
        changes = registry.apply_catalog(declared, prune=prune, canary=canary)  # type: ignore[arg-type]
        _show(list(changes), json, done=True)
