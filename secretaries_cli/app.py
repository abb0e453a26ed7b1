"""The root `secretaries` command: global options, then the command groups."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
import typer.main

from secretaries_cli import help
from secretaries_cli.commands import (
    bot,
    catalog,
    catalog_file,
    chat,
    contexts,
    database,
    evals,
    links,
    providers,
    queue,
    serve,
    tokens,
    tools,
    usage,
    users,
    versions,
)
from secretaries_cli.runtime import App, Runtime, guarded
from secretaries_core.config import Settings

DISTRIBUTION = "secretaries-platform"  # on PyPI; "secretaries" there is another project

help.install()

app = App(
    name="secretaries",
    help="Manage AI secretaries, their users and conversation contexts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            number = installed(DISTRIBUTION)
        except PackageNotFoundError:  # running from a checkout without an install
            number = "unknown"
        typer.echo(f"secretaries {number}")
        raise typer.Exit()


@app.callback()
@guarded
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SECRETARIES_DATABASE_URL",
            metavar="URL",
            help="SQLAlchemy URL (default: SQLite under the user data dir).",
            show_envvar=True,
        ),
    ] = None,
    context_url: Annotated[
        str | None,
        typer.Option(
            "--context-url",
            envvar="SECRETARIES_CONTEXT_URL",
            metavar="URL",
            help="Where contexts live: the database (default), redis://… or redis+cluster://…",
            show_envvar=True,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Manage AI secretaries, their users and conversation contexts."""
    state = Runtime(Settings.load(database_url=database_url, context_url=context_url))
    ctx.obj = state
    ctx.call_on_close(state.close)


app.add_typer(database.app, name="db")
catalog.register(app)
app.add_typer(users.app, name="users")
links.register(app)
app.add_typer(contexts.app, name="contexts")
chat.register(app)
bot.register(app)
queue.register(app)
usage.register(app)
serve.register(app)
versions.register(app)
versions.register_replay(app)
evals.register(app)
providers.register(app)
tokens.register(app)
tools.register(app)
catalog_file.register(app)


def main() -> None:
    """Console-script entry point."""
    only_invoked(app, sys.argv[1:])
    app()


def only_invoked(root: typer.Typer, argv: list[str]) -> None:
    """Keep in `root` only the command or group `argv` invokes, when that is certain.

    Typer turns every registered command into a click command (signature inspection,
    parameter objects) on every run: 40 ms of CPU for the whole tree, about a fifth of
    a command's start-up, spent on the 57 commands that will not run. Anything uncertain —
    no command word, root options other than the URLs, a word that names no command,
    shell completion — keeps the whole tree, so root help, suggestions and completion
    see every command.
    """
    if any(name.endswith("_COMPLETE") for name in os.environ):
        return
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        word = rest.pop(0)
        if word in _URL_OPTIONS:
            if not rest:
                return
            rest.pop(0)
        elif word.partition("=")[0] not in _URL_OPTIONS:
            return  # --help, --version, a typo: root's own answer needs the tree
    if not rest:
        return
    wanted = rest[0]
    commands = [
        c
        for c in root.registered_commands
        if (c.name or typer.main.get_command_name(getattr(c.callback, "__name__", ""))) == wanted
    ]
    groups = [g for g in root.registered_groups if g.name == wanted]
    if len(commands) + len(groups) == 1:
        root.registered_commands, root.registered_groups = commands, groups


_URL_OPTIONS = ("--database-url", "--context-url")
