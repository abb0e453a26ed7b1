"""`providers`: named OpenAI-compatible servers that secretaries' models can name."""

from __future__ import annotations

from typing import Annotated

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, new_app, runtime

app = new_app("Model providers: OpenAI-compatible servers, each with its key's env var.")
NameArg = Annotated[str, typer.Argument(help="Provider name (lowercase), used as NAME/model.")]


def register(root: App) -> None:
    """Add the `providers` group to the root app."""
    root.add_typer(app, name="providers")


@app.command("add")
def add(
    ctx: typer.Context,
    name: NameArg,
    base_url: Annotated[
        str, typer.Option("--base-url", help="The server's OpenAI-compatible /v1 URL.")
    ],
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="The environment variable that holds its key."),
    ] = None,
) -> None:
    """Add (or replace) a provider; models then say NAME/model.

    Example: secretaries providers add local --base-url http://127.0.0.1:8080/v1
    """
    from secretaries_core.catalog.providers import add_provider, check_provider
    from secretaries_core.plumbing.db import transaction
    from secretaries_core.plumbing.timeutil import utcnow
    from secretaries_core.redact import mask_url

    check_provider(name, base_url, api_key_env)  # before the database is opened
    # On Core, not the registry: nothing in this process listens for the change.
    changed = f"provider {name!r} changed meanwhile"
    with transaction(runtime(ctx).engine(), write=True, conflict=changed) as conn:
        provider = add_provider(conn, name, base_url, api_key_env, utcnow())
    key = f", key from ${provider.api_key_env}" if provider.api_key_env else ", no key"
    output.say(f"Provider {provider.name}: {mask_url(provider.base_url)}{key}.")


@app.command("list")
def list_(ctx: typer.Context, json: JsonFlag = False) -> None:
    """The providers (the built-in `openai` one first); keys are never shown.

    Example: secretaries providers list --json
    """
    from secretaries_core.llm.providers_table import listing, provider_rows

    rt = runtime(ctx)
    with rt.engine().connect() as conn:
        rows = listing(rt.settings.openai_base_url, provider_rows(conn))
    if json:
        output.emit_json(rows)
        return
    render.providers(rows)


@app.command("remove")
def remove(ctx: typer.Context, name: NameArg) -> None:
    """Remove a provider; refused while a secretary (or a version of one) uses it.

    Example: secretaries providers remove local
    """
    from secretaries_core.catalog.providers import remove_provider
    from secretaries_core.plumbing.db import transaction

    changed = f"provider {name!r} changed meanwhile"
    with transaction(runtime(ctx).engine(), write=True, conflict=changed) as conn:
        remove_provider(conn, name)
    output.say(f"Provider {name} removed.")
