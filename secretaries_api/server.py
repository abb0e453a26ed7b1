"""Running the API under uvicorn with limits a public port needs.

uvicorn waits for a request's headers forever and accepts connections until the process
runs out of file descriptors; a few thousand half-open connections (slowloris) then take
the API down, `/healthz` included. Here:

- `SECRETARIES_API_HEADER_TIMEOUT` (s): a connection that has not sent a complete request
  head within it (new, or idle between keep-alive requests after sending a byte) is closed;
- `SECRETARIES_API_KEEPALIVE` (s): uvicorn's idle keep-alive timeout;
- `SECRETARIES_API_MAX_CONNECTIONS`: above it, a new connection evicts another one that
  is still waiting for its request head (it costs the server nothing to drop), else it is
  closed at once; requests being answered are never cut;
- the soft limit of open files is raised to the hard one, so the cap, not the kernel,
  decides;
- access log lines carry the path without its query string (a token pasted into a URL
  never reaches a log).

The HTTP parser is httptools (C, the `api` extra installs it) when it is there, else h11
(pure Python, several times the CPU per request): the guards above work on either.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    FAST_PARSER: type[Any] | None = HttpToolsProtocol
except ImportError:  # httptools not installed: h11 only
    FAST_PARSER = None

from secretaries_core.config import Settings
from secretaries_core.redact import ScrubFilter

WEBHOOK_PATH = "/telegram/webhook"


class _AccessWithoutQuery(logging.Filter):
    """Drop the query string from uvicorn's access lines (args: client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument; drop the webhook's successful requests (Telegram's
        every update: a line each would be most of the log and of the server's CPU)."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            if args[2] == WEBHOOK_PATH and len(args) >= 5 and args[4] == 200:
                return False
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def guarded_protocol(
    header_timeout: float, max_connections: int, *, parser: type[Any] | None = None
) -> type[Any]:
    """uvicorn's HTTP protocol (`parser`: httptools when installed, else h11) with a
    request-head deadline and a connection cap."""
    base: type[Any] = parser or FAST_PARSER or H11Protocol

    class GuardedProtocol(base):  # type: ignore[misc]
        """uvicorn's protocol that bounds how long and how many connections wait."""

        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                victim = next((c for c in self.connections if c is not self and _waiting(c)), None)
                (victim or self).transport.close()
                if victim is None:
                    return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if _waiting(self) and self._head_timer is None:
                self._arm()  # a keep-alive connection started its next request head
            super().data_received(data)
            if not _waiting(self):
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(header_timeout, self._head_late)

        def _head_late(self) -> None:
            self._head_timer = None
            if _waiting(self) and not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


def _waiting(protocol: Any) -> bool:
    """True while a connection has no request being answered (it waits for a head)."""
    cycle = protocol.cycle
    return cycle is None or cycle.response_complete


def raise_open_files_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (no-op where there is none)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return


def serve(app: Any, *, host: str, port: int, settings: Settings) -> None:
    """Run `app` with the limits above until SIGTERM/SIGINT."""
    import uvicorn

    raise_open_files_limit()
    logging.getLogger("uvicorn.access").addFilter(_AccessWithoutQuery())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(ScrubFilter())
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=True,
        http=guarded_protocol(settings.api_header_timeout_seconds, settings.api_max_connections),
        timeout_keep_alive=max(1, int(settings.api_keepalive_seconds)),
        backlog=max(128, settings.api_max_connections),
    )
