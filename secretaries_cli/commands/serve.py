"""`serve`: run the REST API with uvicorn."""

from __future__ import annotations

import ipaddress
import os
from importlib.util import find_spec
from typing import Annotated

import typer

from secretaries_cli.runtime import App, runtime
from secretaries_core.errors import InvalidInput


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_NO_EXTRA = "the API needs its extra: pip install 'secretaries-platform[api]' ({} missing)"

# A bearer token anyone can guess in a few tries protects nothing.
MIN_TOKEN_CHARS = 8


def register(app: App) -> None:
    """Add `serve` to the root app."""

    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option("--port", min=1, max=65535, help="TCP port to listen on.")
        ] = 8000,
        no_auth: Annotated[
            bool, typer.Option("--no-auth", help="No token (only allowed on loopback).")
        ] = False,
    ) -> None:
        """Serve the REST API (the `api` extra, and SECRETARIES_API_TOKEN).

        Example: SECRETARIES_API_TOKEN=$(openssl rand -hex 32) secretaries serve --port 8000
        """
        # The extra first (asking for a token the server could not use anyway helps
        # nobody), then the token: both refused before anything heavy is imported.
        missing = next((m for m in ("uvicorn", "fastapi") if find_spec(m) is None), None)
        if missing is not None:
            raise InvalidInput(_NO_EXTRA.format(missing))
        token = os.environ.get("SECRETARIES_API_TOKEN") or None
        if no_auth:
            if not _is_loopback(host):
                raise InvalidInput(f"--no-auth is only allowed on a loopback address, not {host}")
            token = None
        elif token is None:
            raise InvalidInput(
                "set SECRETARIES_API_TOKEN (or use --no-auth on 127.0.0.1) to start the API"
            )
        elif len(token) < MIN_TOKEN_CHARS:
            raise InvalidInput(
                f"SECRETARIES_API_TOKEN is {len(token)} characters: use at least "
                f"{MIN_TOKEN_CHARS} (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        rt = runtime(ctx)
        try:
            from secretaries_api.app import create_app
            from secretaries_api.server import serve as run_server
            from secretaries_api.services import Services
        except ImportError as exc:
            raise InvalidInput(_NO_EXTRA.format(exc.name)) from None
        from secretaries_cli.output import service_logging

        # The root handler scrubs too: library records reach it, not uvicorn's handlers.
        service_logging()
        services = Services.from_settings(rt.settings)  # fail here, before binding, if down
        from secretaries_core.queue.client import Queue

        if Queue.if_configured(rt.settings) is not None:  # the API queues updates there
            try:
                services.queue().check_partitions()  # another count recorded: refuse
            except BaseException:
                services.close()
                raise
        try:
            run_server(
                create_app(services, api_token=token, auth=not no_auth),
                host=host,
                port=port,
                settings=rt.settings,
            )
        finally:
            services.close()
