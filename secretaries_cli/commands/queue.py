"""`worker` and `queue` commands: answer queued updates; inspect and retry the queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from secretaries_cli import output
from secretaries_cli.options import JsonFlag, MetricsPortOpt
from secretaries_cli.runtime import App, new_app, runtime

if TYPE_CHECKING:
    from secretaries_core.config import Settings
    from secretaries_core.queue.client import Queue

app = new_app("The Redis Streams queue: statistics, dead letters, retry.")


def _queue(settings: Settings) -> Queue:
    # Imported here: `secretaries --help` must not load redis or SQLAlchemy.
    from secretaries_core.queue.client import Queue

    return Queue.from_settings(settings)


def register(root: App) -> None:
    """Add `worker` and the `queue` group to the root app."""

    @root.command("worker")
    def worker(
        ctx: typer.Context,
        concurrency: Annotated[
            int, typer.Option("--concurrency", min=1, help="Messages in flight at most.")
        ] = 64,
        metrics_port: MetricsPortOpt = None,
    ) -> None:
        """Answer queued updates until SIGTERM (then finish those in flight, exit 0).

        Example: SECRETARIES_QUEUE_URL=redis://localhost:6379/0 secretaries worker --concurrency 64
        """
        rt = runtime(ctx)
        rt.settings.require_queue()  # refused before the heavy imports below
        import asyncio
        import logging
        import signal

        from secretaries_cli.output import service_logging
        from secretaries_core.queue.worker import Worker

        service_logging()
        log = logging.getLogger("secretaries.worker")
        queue = _queue(rt.settings)

        async def main() -> None:
            orchestrator = rt.orchestrator()
            if metrics_port is not None:
                orchestrator.metrics.serve(metrics_port, rt.settings.metrics_host)
                log.info("metrics on http://%s:%d/metrics", rt.settings.metrics_host, metrics_port)
            job = Worker(
                orchestrator,
                queue,
                concurrency=concurrency,
                lease_seconds=rt.settings.queue_lease_seconds,
                max_attempts=rt.settings.queue_max_attempts,
                outage_grace=rt.settings.outage_grace_seconds,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, job.stop)

            try:
                await job.run()
            finally:
                await orchestrator.aclose()
                await queue.aclose()

        try:
            asyncio.run(main())
        finally:
            queue.close()

    root.add_typer(app, name="queue")


@app.command("stats")
def stats(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Inbound length, pending, oldest pending age, consumers, dead letters, replies stream.

    Example: secretaries queue stats --json
    """
    queue = _queue(runtime(ctx).settings)
    try:
        doc = queue.stats()
    finally:
        queue.close()
    if json:
        output.emit_json(doc)
        return
    output.table(
        f"{doc['workers']} worker(s), {doc['partitions']} partition(s); replies in "
        f"{doc['replies_stream']}",
        ["inbound", "pending", "oldest pending (s)", "dead letters", "replies"],
        [
            [
                doc["inbound"],
                doc["pending"],
                doc["oldest_pending_age_s"],
                doc["dead_letters"],
                doc["replies"],
            ]
        ],
    )
    if doc["consumers"]:
        output.table(
            "consumers",
            ["consumer", "pending", "idle (ms)"],
            ((name, c["pending"], c["idle_ms"]) for name, c in doc["consumers"].items()),
        )


@app.command("dead-letters")
def dead_letters(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Messages that failed for good, with their error.

    Example: secretaries queue dead-letters --json
    """
    queue = _queue(runtime(ctx).settings)
    try:
        letters = queue.dead_letters()
    finally:
        queue.close()
    if json:
        output.emit_json({"dead_letters": letters})
        return
    output.table(
        f"{len(letters)} dead letter(s)",
        ["id", "update_id", "telegram_id", "error", "text"],
        ((d["id"], d["update_id"], d["telegram_id"], d["error"], d["text"][:60]) for d in letters),
    )


@app.command("retry")
def retry(
    ctx: typer.Context,
    ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ID", show_default=False, help="Dead-letter entry ids (from dead-letters)."
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    json: JsonFlag = False,
) -> None:
    """Queue dead letters again: the ones named by ID, or --all.

    Example: secretaries queue retry --all
    """
    from secretaries_core.errors import InvalidInput

    if bool(ids) == all_:
        raise InvalidInput("name dead letters by ID or pass --all (not both)")
    queue = _queue(runtime(ctx).settings)
    try:
        count = queue.retry(None if all_ else ids)
    finally:
        queue.close()
    if json:
        output.emit_json({"retried": count})
    else:
        output.say(f"Queued {count} dead letter(s) again.")


@app.command("repartition")
def repartition(
    ctx: typer.Context,
    partitions: Annotated[
        int, typer.Argument(metavar="N", min=1, max=4096, help="The new partition count.")
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (scripts must pass it).")] = False,
    json: JsonFlag = False,
) -> None:
    """Move every queued entry to N partitions, keeping each user's order (no worker may run).

    Then start workers, bots and APIs with SECRETARIES_QUEUE_PARTITIONS=N.

    Example: secretaries queue repartition 32 --yes
    """
    from secretaries_core.errors import Conflict

    queue = _queue(runtime(ctx).settings)
    try:
        running = queue.stats()["workers"]
        if running:
            raise Conflict(
                f"{running} worker(s) are running on the queue {queue.masked}: stop every "
                "worker, then repartition"
            )
        before = queue.recorded_partitions() or queue.keys.partitions
        if not output.confirmed(
            f"Move the queue from {before} to {partitions} partitions?", yes=yes
        ):
            raise Conflict("not confirmed: pass --yes to repartition without a terminal")
        moved = queue.repartition(partitions)
    finally:
        queue.close()
    if json:
        output.emit_json({"partitions": partitions, "previous": before, "moved": moved})
    else:
        output.say(
            f"Queue repartitioned from {before} to {partitions} partitions ({moved} entries "
            f"moved). Start every process with SECRETARIES_QUEUE_PARTITIONS={partitions}."
        )
