"""Link commands: assign, current, history, migrate-users."""

from __future__ import annotations

from typing import Annotated

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag, LimitOpt, OffsetOpt, page
from secretaries_cli.runtime import App, UserArg, runtime


def register(app: App) -> None:
    """Add the link commands to the root app."""

    @app.command("assign")
    def assign(
        ctx: typer.Context,
        user: UserArg,
        sec: Annotated[str, typer.Argument(metavar="SEC", help="The secretary: its name or UUID.")],
        json: JsonFlag = False,
    ) -> None:
        """Switch USER to SEC.

        Example: secretaries assign @ann alice
        """
        result = runtime(ctx).registry().assign(user, sec)
        if json:
            output.emit_json(result)
        else:
            output.say(
                render.assigned_line(user, result.secretary, result.previous, result.changed)
            )

    @app.command("current")
    def current(ctx: typer.Context, user: UserArg, json: JsonFlag = False) -> None:
        """Show USER's resolved secretary and where it comes from.

        Example: secretaries current 42 --json
        """
        from secretaries_core.catalog.schemas import CurrentOut, UserOut

        found, secretary, served = runtime(ctx).registry().current_version(user)
        doc = CurrentOut(
            user=UserOut.of(found.user),
            secretary=secretary,
            source=found.source,
            version=served.version,
            version_source=served.source,
        )
        if json:
            output.emit_json(doc)
        else:
            output.say(
                f"{user}: {secretary.name} ({found.source}), version {served.version} "
                f"({served.source}), model {served.model}"
            )

    @app.command("history")
    def history(
        ctx: typer.Context,
        user: UserArg,
        limit: LimitOpt = None,
        offset: OffsetOpt = 0,
        json: JsonFlag = False,
    ) -> None:
        """Show USER's secretary links, newest first.

        Example: secretaries history @ann --limit 10
        """
        rows = page(runtime(ctx).registry().history(user), limit, offset)
        if json:
            output.emit_json(rows)
            return
        render.history((r.secretary, r.is_active, r.created_at, r.updated_at) for r in rows)

    @app.command("migrate-users")
    def migrate_users(
        ctx: typer.Context,
        to: Annotated[
            str | None, typer.Option("--to", metavar="SEC", help="Target (default: the default).")
        ] = None,
        from_: Annotated[
            str | None, typer.Option("--from", metavar="SEC", help="Move the users now on SEC.")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Count only, write nothing.")
        ] = False,
        batch_size: Annotated[
            int, typer.Option("--batch-size", min=1, help="Users per transaction.")
        ] = 10_000,
        json: JsonFlag = False,
    ) -> None:
        """Give every user without an active link (or, with --from, on SEC) an explicit link.

        Example: secretaries migrate-users --to alice --dry-run
        """
        from secretaries_core.catalog.migration import migrate_users
        from secretaries_core.plumbing.timeutil import utcnow

        engine = runtime(ctx).engine()  # on Core: nothing in this process listens
        with output.progress_bar("migrating users", enabled=not (json or dry_run)) as progress:
            result = migrate_users(
                engine,
                utcnow,
                to=to,
                from_=from_,
                dry_run=dry_run,
                batch_size=batch_size,
                progress=progress,
            )
        secretary, migrated = result["secretary"], result["migrated"]
        if json:
            output.emit_json(result)
        elif dry_run:
            output.say(f"Dry run: {migrated} user(s) would be linked to {secretary}.")
        else:
            output.say(f"Linked {migrated} user(s) to {secretary}.")
