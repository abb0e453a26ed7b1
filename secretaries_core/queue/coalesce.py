"""Script calls made in one tick of the event loop, sent to Redis as one pipeline.

A busy ingress (the webhook, `/api/updates`) runs one enqueue script per update, and each
`EVALSHA` sent alone costs a pool checkout, a socket write, a read and a release: at a few
thousand updates a second that was a third of the API process's CPU. The calls that meet
in one tick (the updates that arrived in one read of the sockets) are sent together, as
one pipeline without a transaction — each script is atomic on its own, as before — and
each caller gets its own result or error. A lone call waits for nothing but its own turn
of the loop.

Hand-written because redis-py has no automatic pipelining for asyncio; this is its
smallest form. Resends follow the client's retry policy (the pipeline is resent whole on
a broken connection; the scripts are add-once, so a resend repeats nothing). A server that
lost its scripts (a restart) gets their bodies in a second pipeline for those calls only.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError

_Call = tuple[str, int, tuple[Any, ...], "asyncio.Future[Any]"]


@functools.cache
def script_sha(script: str) -> str:
    """The SHA1 Redis knows `script` by."""
    return hashlib.sha1(script.encode()).hexdigest()


class ScriptBatches:
    """One loop's gatherer: `run` a script; calls of the same tick share a round trip."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client
        self._gathering: list[_Call] | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    async def run(self, script: str, numkeys: int, *args: Any) -> Any:
        """The script's reply, as `EVALSHA` alone would give it (its error raised)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._gathering is None:
            self._gathering = []
            # The task's first step runs after every callback already due in this tick:
            # the other updates read in the same tick join the batch before it is sent.
            task = asyncio.ensure_future(self._flush())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        self._gathering.append((script, numkeys, args, future))
        return await future

    async def _flush(self) -> None:
        calls, self._gathering = self._gathering or [], None
        try:
            results = await self._send(calls)
        except Exception as exc:
            for *_, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for *_, future in calls:
                future.cancel()
            raise
        for (*_, future), result in zip(calls, results, strict=True):
            if future.done():  # its caller was cancelled: the script ran all the same
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _send(self, calls: list[_Call]) -> list[Any]:
        client = self._client()
        pipe = client.pipeline(transaction=False)
        for script, numkeys, args, _ in calls:
            pipe.evalsha(script_sha(script), numkeys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unknown:
            pipe = client.pipeline(transaction=False)
            for i in unknown:
                script, numkeys, args, _ = calls[i]
                pipe.eval(script, numkeys, *args)
            for i, result in zip(unknown, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = result
        return results
