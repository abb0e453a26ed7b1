"""A lean RESP3 connection on asyncio: pipelined commands, replies and pushes in wire order.

The context store's lane (`redis_lane`) needs two things redis-py's asyncio pool does not
give: the server's invalidation pushes and the replies to its own commands seen in exactly
the order the server wrote them (one connection, read by one parser), and a round trip that
costs the event loop little (redis-py: ~110 µs of CPU per command here; this: ~50 µs).

Failures speak redis-py's exceptions (`ConnectionError`, `TimeoutError`, `ResponseError`),
so the store maps them the way it maps its pool's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Arg = str | bytes | int | float
Then = Callable[[Any], None]
"""Called with a reply in wire order, before anything the server wrote after it is read."""


class Push(list[Any]):
    """An out-of-band message (`>`): an invalidation, in this module's use."""


class _ServerError:
    """An error reply, parsed; raised (see `server_error`) for the command it answers."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text.decode(errors="replace")


class _Incomplete(Exception):
    """The buffer ends inside a value: wait for more bytes."""


class ProtocolViolation(Exception):
    """The peer sent something that is not RESP."""


def server_error(text: str) -> Exception:
    """An error reply as the exception redis-py raises for it: LOADING is a
    `BusyLoadingError` (a `ConnectionError`: retried, then "unavailable"), NOSCRIPT a
    `NoScriptError`, anything unknown a `ResponseError`."""
    # The pool's own parser's table, so that both paths raise the same classes.
    error: Exception = BaseParser.parse_error(text)  # type: ignore[no-untyped-call]
    return error


def encode(args: Sequence[Arg]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        # Exact types first: every write goes through here with a score of arguments.
        kind = type(arg)
        data: bytes
        if kind is str:
            data = arg.encode()  # type: ignore[union-attr]
        elif kind is bytes:
            data = arg  # type: ignore[assignment]
        else:
            data = _other(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _other(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, bool):
        raise TypeError("a Redis argument cannot be a bool")
    if isinstance(arg, int):
        return b"%d" % arg
    return repr(arg).encode()


def parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """The value starting at `pos` and the position after it; `_Incomplete` if cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    line = buf[pos + 1 : end]
    after = end + 2
    if kind in b"$=!":  # bulk string, verbatim string, bulk error
        size = int(line)
        if size < 0:
            return None, after
        stop = after + size
        if len(buf) < stop + 2:
            raise _Incomplete
        data = bytes(buf[after:stop])
        if kind == 0x21:  # "!"
            return _ServerError(data), stop + 2
        return (data[4:] if kind == 0x3D else data), stop + 2  # "=": "txt:" before the text
    if kind == 0x3A or kind == 0x28:  # ":" integer, "(" big number
        return int(line), after
    if kind == 0x2B:  # "+"
        return bytes(line), after
    if kind == 0x2D:  # "-"
        return _ServerError(bytes(line)), after
    if kind in b"*~>%|":
        count = int(line)
        if count < 0:
            return None, after
        if kind in b"%|":
            count *= 2
        items = []
        for _ in range(count):
            item, after = parse(buf, after)
            items.append(item)
        if kind == 0x3E:  # ">"
            return Push(items), after
        if kind == 0x25:  # "%"
            return dict(zip(items[::2], items[1::2], strict=True)), after
        if kind == 0x7C:  # "|": attributes describe the value that follows; skip them
            return parse(buf, after)
        return items, after
    if kind == 0x5F:  # "_" null
        return None, after
    if kind == 0x2C:  # "," double
        return float(line), after
    if kind == 0x23:  # "#" boolean
        return line == b"t", after
    raise ProtocolViolation(f"unexpected RESP type byte {bytes([kind])!r}")


class RespConnection(asyncio.Protocol):
    """One connection: commands pipelined, replies matched in order, pushes to `on_push`."""

    def __init__(
        self,
        on_push: Callable[[Push], None],
        on_lost: Callable[[RespConnection], None],
        *,
        timeout_s: float,
        tls: bool = False,
    ) -> None:
        self._on_push = on_push
        # Over TLS the socket carries ciphertext: `drain` may only look, never read.
        self._tls = tls
        self._on_lost = on_lost
        self._timeout_s = timeout_s
        self._pending: deque[tuple[asyncio.Future[Any], Then | None, float]] = deque()
        self._buf = bytearray()
        self._pos = 0
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._watchdog: asyncio.TimerHandle | None = None
        self._failure: Exception | None = None
        self.heard = time.monotonic()
        """When the server last sent anything (monotonic seconds)."""

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and its descriptor (for `drain`)."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def data_received(self, data: bytes) -> None:
        """Parse every complete value: pushes to `on_push`, replies to their commands."""
        self.heard = time.monotonic()
        self._buf += data
        buf = self._buf
        while self._pos < len(buf) and self._failure is None:
            try:
                value, self._pos = parse(buf, self._pos)
            except _Incomplete:
                break
            except (ProtocolViolation, ValueError) as exc:
                log.error("Redis sent something that is not RESP3; dropping the connection")
                self._fail(RedisConnectionError(f"protocol error from Redis: {exc}"))
                return
            self._deliver(value)
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del buf[: self._pos]
            self._pos = 0

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every command still waiting; tell the owner."""
        failure = self._failure or RedisConnectionError(
            f"Connection closed by server ({exc})" if exc else "Connection closed by server."
        )
        self._failure = failure
        self._transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, deque()
        for future, _then, _sent in pending:
            if not future.done():
                future.set_exception(failure)
        self._on_lost(self)

    # -- use ------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """True until the connection is lost or closed."""
        return self._transport is not None and self._failure is None

    def send(self, args: Sequence[Arg], then: Then | None = None) -> asyncio.Future[Any]:
        """Write one command; the future gets its reply (`then` sees it first, in order)."""
        transport = self._transport
        if transport is None or self._failure is not None:
            raise self._failure or RedisConnectionError("not connected to Redis")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((future, then, time.monotonic()))
        transport.write(encode(args))
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout_s, self._check_timeout)
        return future

    def drain(self) -> bool:
        """Read what the kernel already holds for us, now; False if the connection is gone
        (over TLS: False if anything waits, which only the transport can decrypt).

        A reply on another connection can resume a coroutine before the event loop has read
        an invalidation that arrived with it; a read served from memory calls this first.
        """
        if not self.open or self._fd < 0:
            return False
        if self._tls:
            # Bytes waiting (a notice, perhaps) that only the transport can decrypt: say
            # "not current" and let the caller ask Redis, which costs one round trip.
            waiting, _w, _x = select.select([self._fd], [], [], 0)
            return not waiting
        while True:
            try:
                data = os.read(self._fd, 262144)
            except BlockingIOError:
                return self.open
            except OSError as exc:
                self._fail(RedisConnectionError(f"Connection to Redis broke: {exc}"))
                return False
            if not data:
                self._fail(RedisConnectionError("Connection closed by server."))
                return False
            self.data_received(data)

    def close(self) -> None:
        """Close the connection (waiting commands fail)."""
        if self._transport is not None:
            self._transport.close()

    # -- internals ------------------------------------------------------------------------

    def _deliver(self, value: Any) -> None:
        if isinstance(value, Push):
            try:
                self._on_push(value)
            except Exception:
                # The owner's handler failed: its memory can no longer be trusted.
                log.exception("handling a Redis push failed; dropping the connection")
                self._fail(RedisConnectionError("a Redis push could not be handled"))
            return
        if not self._pending:
            log.error("Redis sent a reply nothing asked for; dropping the connection")
            self._fail(RedisConnectionError("unexpected reply from Redis"))
            return
        future, then, _sent = self._pending.popleft()
        if isinstance(value, _ServerError):
            if not future.done():
                future.set_exception(server_error(value.text))
            return
        if then is not None:
            try:
                then(value)
            except Exception as exc:
                log.exception("handling a Redis reply failed")
                if not future.done():
                    future.set_exception(exc)
                return
        if not future.done():
            future.set_result(value)

    def _check_timeout(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        waited = time.monotonic() - self._pending[0][2]
        if waited >= self._timeout_s:
            self._fail(RedisTimeoutError(f"no reply from Redis in {self._timeout_s:g} s"))
            return
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._timeout_s - waited, self._check_timeout)

    def _fail(self, failure: Exception) -> None:
        """Give up on the connection: waiting commands get `failure`."""
        if self._failure is None:
            self._failure = failure
        if self._transport is not None:
            self._transport.abort()  # connection_lost follows and fails what waits


async def connect(
    url: str,
    on_push: Callable[[Push], None],
    on_lost: Callable[[RespConnection], None],
    *,
    connect_timeout_s: float,
    timeout_s: float,
    setup: Sequence[Sequence[Arg]] = (),
) -> RespConnection:
    """Open `url` (redis://, rediss:// or unix://), speak RESP3 (HELLO 3 with AUTH, SELECT),
    then send `setup`. The URL is read by redis-py's own parser, and TLS is set up by its
    own SSL context, so the lane reaches exactly what the store's pool reaches."""
    options = parse_url(url)
    connection_class = options.pop("connection_class", None)
    tls = None
    if connection_class is not None and issubclass(connection_class, SSLConnection):
        tls = connection_class(**options).ssl_context.get()
    loop = asyncio.get_running_loop()

    def protocol() -> RespConnection:
        return RespConnection(on_push, on_lost, timeout_s=timeout_s, tls=tls is not None)

    try:
        async with asyncio.timeout(connect_timeout_s):
            if "path" in options:
                _t, conn = await loop.create_unix_connection(protocol, options["path"])
            else:
                host = options.get("host") or "localhost"
                _t, conn = await loop.create_connection(
                    protocol,
                    host,
                    options.get("port") or 6379,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
    except TimeoutError as exc:
        raise RedisTimeoutError(f"connecting to Redis took over {connect_timeout_s:g} s") from exc
    except OSError as exc:  # ssl.SSLError is one
        raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
    hello: list[Arg] = ["HELLO", "3"]
    if options.get("password") is not None:
        hello += ["AUTH", options.get("username") or "default", options["password"]]
    commands: list[Sequence[Arg]] = [hello]
    if options.get("db"):
        commands.append(["SELECT", int(options["db"])])
    commands += setup
    try:
        async with asyncio.timeout(timeout_s):
            # Every reply is awaited (none left unretrieved), the first failure raised.
            replies = await asyncio.gather(
                *(conn.send(command) for command in commands), return_exceptions=True
            )
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
    except BaseException as exc:
        conn.close()
        if isinstance(exc, TimeoutError):
            raise RedisTimeoutError(f"Redis did not answer in {timeout_s:g} s") from exc
        raise
    return conn
