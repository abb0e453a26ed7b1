"""The baseline for the webhook benchmark: a bare aiohttp handler that does one XADD."""

from __future__ import annotations

import sys

import redis.asyncio as aioredis
from aiohttp import web


def make_app(redis_url: str) -> web.Application:
    """POST /hook: the JSON body's text into one stream entry, answered 200."""
    client = aioredis.Redis.from_url(redis_url)

    async def hook(request: web.Request) -> web.Response:
        update = await request.json()
        message = update.get("message") or {}
        await client.xadd("bare:in", {"u": update["update_id"], "t": message.get("text", "")})
        return web.json_response({"ok": True})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/healthz", health)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None
    )
