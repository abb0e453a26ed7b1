"""Versions, rollouts and pins: versions, diff, rollback, rollout …, pin, unpin."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from secretaries_cli import output, render
from secretaries_cli.options import JsonFlag
from secretaries_cli.runtime import App, UserArg, new_app, runtime

SecArg = Annotated[str, typer.Argument(help="Secretary name or UUID.")]
PercentOpt = Annotated[
    int, typer.Option("--percent", min=0, max=100, help="Share of SEC's users, 0-100.")
]

rollout_app = new_app("Canary rollouts of a secretary's version: start, set, promote, abort.")


def _changed_then_status(
    ctx: typer.Context,
    sec: str,
    json: bool,
    change: Any,
    conflict: str = "the rollout changed meanwhile; try again",
) -> None:
    """Run `change(conn, now)` (a rollout write on Core) and print the rollout's status.

    On Core, not the registry: nothing in this process listens for the change, and the
    ORM would cost more CPU than the write.
    """
    from secretaries_core.catalog.reads import rollout_status
    from secretaries_core.plumbing.db import transaction
    from secretaries_core.plumbing.timeutil import utcnow

    engine = runtime(ctx).engine()
    with transaction(engine, write=True, conflict=conflict) as conn:
        change(conn, utcnow())
        doc = rollout_status(conn, sec)
    if json:
        output.emit_json(doc)
        return
    render.rollout_status(doc)


def _status(ctx: typer.Context, sec: str, json: bool) -> None:
    doc = runtime(ctx).registry().rollout_status(sec)
    if json:
        output.emit_json(doc)
        return
    render.rollout_status(doc)


def register(app: App) -> None:
    """Add versions, diff, rollback, pin, unpin and the rollout group to the root app."""

    @app.command("versions")
    def versions(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """List SEC's versions, newest first, with their state (live, candidate, draft, retired).

        Example: secretaries versions alice --json
        """
        rows = runtime(ctx).registry().versions(sec)
        if json:
            output.emit_json([v.doc() for v in rows])
            return
        render.versions(rows)

    @app.command("diff")
    def diff(
        ctx: typer.Context,
        sec: SecArg,
        v1: Annotated[int, typer.Argument(help="The older version.")],
        v2: Annotated[int, typer.Argument(help="The newer version.")],
        json: JsonFlag = False,
    ) -> None:
        """Show what changed from V1 to V2: model, params and the prompt as a unified diff.

        Example: secretaries diff alice 3 4
        """
        doc = runtime(ctx).registry().diff(sec, v1, v2)
        if json:
            output.emit_json(doc)
            return
        for line in render.diff_lines(doc):
            output.say(line)

    @app.command("rollback")
    def rollback(
        ctx: typer.Context,
        sec: SecArg,
        to: Annotated[int, typer.Option("--to", help="The version whose content goes live.")],
        json: JsonFlag = False,
    ) -> None:
        """Make version N's content live again, as a new version; ends any rollout of SEC.

        Example: secretaries rollback alice --to 3
        """
        from secretaries_core.catalog.reads import secretary_detail
        from secretaries_core.catalog.rollout_writes import rollback
        from secretaries_core.plumbing.db import transaction
        from secretaries_core.plumbing.timeutil import utcnow

        changed = "the secretary changed meanwhile; try again"
        with transaction(runtime(ctx).engine(), write=True, conflict=changed) as conn:
            sec_id, name, number = rollback(conn, sec, to, utcnow())
            detail = secretary_detail(conn, str(sec_id)) if json else None
        if detail is not None:
            output.emit_json(detail)
            return
        output.say(render.rolled_back_line(name, to, number))

    @app.command("pin")
    def pin(
        ctx: typer.Context,
        user: UserArg,
        sec: SecArg,
        version: Annotated[int, typer.Option("--version", help="The version USER gets.")],
    ) -> None:
        """Give USER version N of SEC, whatever is live or rolling out.

        Example: secretaries pin @ann alice --version 2
        """
        runtime(ctx).registry().pin(user, sec, version)
        output.say(render.pinned_line(user, version, sec))

    @app.command("unpin")
    def unpin(ctx: typer.Context, user: UserArg, sec: SecArg) -> None:
        """Remove USER's pin on SEC (back to live or the rollout).

        Example: secretaries unpin @ann alice
        """
        removed = runtime(ctx).registry().unpin(user, sec)
        output.say(render.unpinned_line(user, sec, removed))

    @rollout_app.command("start")
    def start(
        ctx: typer.Context,
        sec: SecArg,
        percent: PercentOpt,
        version: Annotated[
            int | None, typer.Option("--version", help="Default: the newest draft.")
        ] = None,
        max_error_rate: Annotated[
            float | None,
            typer.Option("--max-error-rate", help="Roll back above this error rate (0-1)."),
        ] = None,
        max_dislike_rate: Annotated[
            float | None,
            typer.Option("--max-dislike-rate", help="Roll back above this dislike rate (0-1)."),
        ] = None,
        min_messages: Annotated[
            int,
            typer.Option("--min-messages", min=1, help="Candidate messages before judging."),
        ] = 50,
        require_eval: Annotated[
            bool,
            typer.Option("--require-eval", help="Refuse a version whose latest eval failed."),
        ] = False,
        judge: Annotated[
            str | None,
            typer.Option("--judge", metavar="RUBRIC", help="Judge the candidate's replies."),
        ] = None,
        judge_sample: Annotated[
            float,
            typer.Option("--judge-sample", metavar="P", help="Percent of replies judged."),
        ] = 100.0,
        max_judge_fail_rate: Annotated[
            float | None,
            typer.Option(
                "--max-judge-fail-rate", metavar="R", help="Roll back above this rate (0-1)."
            ),
        ] = None,
        judge_model: Annotated[
            str | None,
            typer.Option("--judge-model", help="The judge's model (default: the candidate's)."),
        ] = None,
        json: JsonFlag = False,
    ) -> None:
        """Serve a version to P% of SEC's users; roll back by itself past the limits.

        Example: secretaries rollout start alice --percent 10 --max-error-rate 0.05
        """
        from secretaries_core.catalog import rollout_writes
        from secretaries_core.catalog.rollout_writes import Judging

        judging = None
        if judge is not None:
            judging = Judging(judge, judge_sample, max_judge_fail_rate, judge_model)
        elif max_judge_fail_rate is not None:
            raise typer.BadParameter("needs --judge RUBRIC", param_hint="--max-judge-fail-rate")
        limits: dict[str, Any] = {
            "percent": percent,
            "version": version,
            "max_error_rate": max_error_rate,
            "max_dislike_rate": max_dislike_rate,
            "min_messages": min_messages,
            "judge": judging,
        }
        # Before the database is opened (the write checks them again, for every caller).
        rollout_writes.check_start(percent, max_error_rate, max_dislike_rate, min_messages, judging)
        if require_eval:  # the eval records are read through the registry
            runtime(ctx).registry().rollout_start(sec, require_eval=True, **limits)
            _status(ctx, sec, json)
            return
        _changed_then_status(
            ctx,
            sec,
            json,
            lambda conn, now: rollout_writes.rollout_start(conn, sec, now, **limits),
            conflict="a rollout of this secretary is already running",
        )

    @rollout_app.command("set")
    def set_(ctx: typer.Context, sec: SecArg, percent: PercentOpt, json: JsonFlag = False) -> None:
        """Change the share of users on the candidate (raising it only adds users).

        Example: secretaries rollout set alice --percent 50
        """
        from secretaries_core.catalog.rollout_writes import rollout_set

        _changed_then_status(ctx, sec, json, lambda conn, _now: rollout_set(conn, sec, percent))

    @rollout_app.command("promote")
    def promote(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """Make the candidate live for everyone.

        Example: secretaries rollout promote alice
        """
        from secretaries_core.catalog.rollout_writes import rollout_promote

        _changed_then_status(ctx, sec, json, lambda conn, now: rollout_promote(conn, sec, now))

    @rollout_app.command("abort")
    def abort(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """Put everyone back on the live version (the candidate stays a draft).

        Example: secretaries rollout abort alice
        """
        from secretaries_core.catalog.rollout_writes import rollout_abort

        _changed_then_status(ctx, sec, json, lambda conn, now: rollout_abort(conn, sec, now))

    @rollout_app.command("status")
    def status(ctx: typer.Context, sec: SecArg, json: JsonFlag = False) -> None:
        """Show SEC's newest rollout with live and candidate counts over its life.

        Example: secretaries rollout status alice --json
        """
        _status(ctx, sec, json)

    app.add_typer(rollout_app, name="rollout")


def register_replay(app: App) -> None:
    """Add `replay` to the root app."""

    @app.command("replay")
    def replay(
        ctx: typer.Context,
        sec: SecArg,
        version: Annotated[
            int | None,
            typer.Option("--version", help="Default: the newest draft or candidate."),
        ] = None,
        users: Annotated[
            int, typer.Option("--users", min=1, help="At most this many conversations.")
        ] = 10,
        judge: Annotated[
            str | None,
            typer.Option("--judge", metavar="RUBRIC", help="Judge candidate vs live answers."),
        ] = None,
        judge_model: Annotated[
            str | None,
            typer.Option("--judge-model", help="The judge's model (default: the version's)."),
        ] = None,
        json: JsonFlag = False,
    ) -> None:
        """Ask a version the last question of real stored conversations; nothing is stored.

        With --judge, a judge compares each candidate answer with the stored one: wins,
        ties and losses of the candidate.

        Example: secretaries replay alice --users 20 --judge "Answers the question, briefly."
        """
        from secretaries_cli import plain

        plain.replay(runtime(ctx), sec, version, users, judge, judge_model, json)
