"""/api/contexts and /api/messages: conversation contexts and the orchestrator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from secretaries_api.errors import status_for
from secretaries_api.routes.common import Svc, UserPath, user_ref
from secretaries_api.schemas import MessageIn, PurgeIn
from secretaries_core.catalog import admin
from secretaries_core.catalog.schemas import ContextStatsOut, PurgeOut, ReplyOut, UserContextsOut
from secretaries_core.errors import SecretariesError, error_code
from secretaries_core.orchestrator import ReplyStream
from secretaries_core.plumbing.durations import parse_duration
from secretaries_core.tools.approval import fixed

router = APIRouter(prefix="/api", tags=["contexts"])


@router.get("/contexts/stats", response_model=ContextStatsOut, operation_id="context_stats")
def context_stats(svc: Svc) -> ContextStatsOut:
    """Contexts and messages, in total and per secretary name."""
    return ContextStatsOut.model_validate(admin.context_stats(svc.registry, svc.contexts).doc())


@router.get(
    "/users/{user_id}/contexts", response_model=UserContextsOut, operation_id="user_contexts"
)
def user_contexts(
    svc: Svc, user_id: UserPath, secretary: str | None = Query(None, max_length=100)
) -> UserContextsOut:
    """The user's stored messages, per secretary (one secretary with `secretary`)."""
    found = admin.user_contexts(svc.registry, svc.contexts, user_ref(user_id), secretary)
    return UserContextsOut.model_validate(found.doc())


@router.post("/contexts/purge", response_model=PurgeOut, operation_id="purge_contexts")
def purge_contexts(svc: Svc, body: PurgeIn) -> PurgeOut:
    """Delete idle contexts, or all of one user's / one secretary's (dry run: count only)."""
    purged = admin.purge_contexts(
        svc.registry,
        svc.contexts,
        older_than=parse_duration(body.older_than) if body.older_than is not None else None,
        user=user_ref(body.user) if body.user else None,
        secretary=body.secretary,
        dry_run=body.dry_run,
    )
    return PurgeOut.model_validate(purged.doc())


@router.post(
    "/messages",
    response_model=ReplyOut,
    operation_id="handle_message",
    responses={200: {"content": {"text/event-stream": {}}, "description": "With ?stream=true"}},
)
async def handle_message(svc: Svc, body: MessageIn, stream: bool = False) -> Response:
    """Handle a message as the bot would: resolve, ask the model, keep the context.

    With `?stream=true` the reply comes as Server-Sent Events: `piece` events with the text
    as it is produced, `tool` events (`{"name", "state": "started" | "done" | "failed"}`)
    while the secretary's tools run, then one `done` event (the `ReplyOut` document) or one
    `error` event.
    """
    approver = fixed(body.approve)
    if not stream:
        reply = await svc.orchestrator.ahandle(
            body.user_id, body.text, username=body.username, approver=approver
        )
        out = ReplyOut(reply=reply.text, secretary=reply.secretary, source=reply.source)
        return JSONResponse(out.model_dump())
    reply_stream = svc.orchestrator.astream(body.user_id, body.text, username=body.username)
    reply_stream.approver = approver
    merged = _Merged(reply_stream)
    # Wait for the first piece or tool event before answering: what fails before the model
    # speaks (quota, busy, unknown secretary, model down) gets its own HTTP status, not a
    # 200 stream.
    try:
        first = await merged.next()
    except BaseException:
        await merged.aclose()
        raise
    return StreamingResponse(sse_reply(merged, first), media_type="text/event-stream")


def _event(name: str, data: object) -> bytes:
    # JSON in the data line: newlines and control characters in the text stay escaped.
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


Item = tuple[str, Any]


class _Merged:
    """The reply's pieces and its tool events, in the order they happened: a task reads
    the pieces into the queue the tool events go to."""

    def __init__(self, stream: ReplyStream) -> None:
        self.stream = stream
        self.items: asyncio.Queue[Item] = asyncio.Queue()
        stream.on_tool = lambda name, state: self.items.put_nowait(
            ("tool", {"name": name, "state": state})
        )
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            async for piece in self.stream:
                self.items.put_nowait(("piece", piece))
        except BaseException as exc:
            self.items.put_nowait(("raise", exc))
            return
        self.items.put_nowait(("end", None))

    async def next(self) -> Item:
        """The next item; an error of the reply is raised."""
        kind, value = await self.items.get()
        if kind == "raise":
            raise value
        return kind, value

    async def aclose(self) -> None:
        """Stop reading: the model call is cancelled and nothing is stored."""
        if not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        await self.stream.aclose()


async def sse_reply(merged: _Merged, first: Item) -> AsyncIterator[bytes]:
    """The reply as Server-Sent Events: `piece` and `tool` events, then `done` or `error`."""
    item = first
    try:
        while item[0] != "end":
            kind, value = item
            yield _event(kind, {"text": value} if kind == "piece" else value)
            item = await merged.next()
    except SecretariesError as exc:
        error = {"code": error_code(exc), "message": str(exc), "status": status_for(exc)}
        yield _event("error", error)
        return
    finally:
        await merged.aclose()
    reply = merged.stream.reply
    assert reply is not None
    done = ReplyOut(reply=reply.text, secretary=reply.secretary, source=reply.source)
    yield _event("done", done.model_dump())
