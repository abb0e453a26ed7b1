"""Redis and Redis Cluster clients: timeouts, the resend policy, URLs with odd passwords.

One module for every Redis connection the library opens — the context store, its tracked
lane, the queue — so they share one set of timeouts and one resend policy. (It imports
nothing of the stores: they import it.)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from secretaries_core.errors import BackendUnavailable, InvalidInput
from secretaries_core.redact import mask_url

REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEME = "redis+cluster"
CONNECT_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_S = 10.0
ASYNC_MAX_CONNECTIONS = 64
# A pooled connection unused this long is PINGed before its next command: after a Redis
# restart the pool holds sockets the new server never saw, and the first write on one
# would otherwise fail the caller with "Connection closed by server".
HEALTH_CHECK_S = 2
# Commands that fail on a broken connection are sent again on a fresh one, a few times.
# Safe because every write of ours is idempotent (see docs/operations.md, "Redis
# restarts"): markers make enqueue, publish and dead letters add-once, a turn carries its
# id and is pushed once per context, XACK/XDEL/EXPIRE/ZADD repeat harmlessly.
COMMAND_RETRIES = 3


def command_retry(retries: int = COMMAND_RETRIES, *, asynchronous: bool = True) -> Any:
    """redis-py's resend policy for a command that met a broken connection: `retries`
    resends, 0.1 s apart doubling up to 1 s. The pools and the context lane share it."""
    from redis.backoff import ExponentialBackoff

    backoff = ExponentialBackoff(cap=1.0, base=0.05)
    if asynchronous:
        from redis.asyncio.retry import Retry as AsyncRetry

        return AsyncRetry(backoff, retries)
    from redis.retry import Retry

    return Retry(backoff, retries)


def _retry_options(*, asynchronous: bool) -> dict[str, Any]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    retry = command_retry(asynchronous=asynchronous)
    return {
        # No CLIENT SETINFO on connect: on a Redis older than 7.2 it fails, and redis-py's
        # health check then reads that failure as the PING reply, leaving the connection
        # out of step with the server (seen after a restart, under load).
        "driver_info": None,
        "retry": retry,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        "health_check_interval": HEALTH_CHECK_S,
    }


def _cluster_client(url: str, masked: str, *, asynchronous: bool = False) -> Any:
    from secretaries_core.context.redis_scripts import UNAVAILABLE

    if asynchronous:
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    else:
        from redis.cluster import ClusterNode, RedisCluster  # type: ignore[assignment]

    parts = urlsplit(encoded_userinfo(url))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = []
    for hostport in hosts.split(","):
        host, _, port = hostport.strip().rpartition(":")
        if not host or not port.isdigit():
            raise InvalidInput(f"bad cluster node {hostport!r} in {masked}: use host:port")
        nodes.append(ClusterNode(host, int(port)))
    tls = parse_qs(parts.query).get("ssl", ["false"])[0].lower() in ("1", "true", "yes")
    try:
        return RedisCluster(
            startup_nodes=nodes,
            username=unquote(username) or None,
            password=unquote(password) or None,
            ssl=tls,
            # No CLIENT SETINFO round trips while a connection opens: redis.asyncio.cluster
            # was seen losing the connection's writer there under concurrent first use
            # ("'NoneType' object has no attribute 'writelines'").
            driver_info=None,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
        )
    except UNAVAILABLE as exc:
        raise BackendUnavailable(f"cannot reach the context store {masked}: {exc}") from exc


def encoded_userinfo(url: str) -> str:
    """`url` with its user name and password percent-encoded.

    redis-py splits a URL with `urlparse`, which ends the host at the first "/": a password
    holding "/", "@" or ":" unencoded would be cut (and its first characters printed in a
    "bad port" error). The user info runs to the last "@" before the query.
    """
    if "://" not in url:
        return url
    start = url.index("://") + 3
    end = min((i for i in (url.find("?", start), url.find("#", start)) if i >= 0), default=len(url))
    at = url.rfind("@", start, end)
    if at < 0:
        return url
    user, colon, password = url[start:at].partition(":")
    userinfo = quote(unquote(user), safe="") + colon + quote(unquote(password), safe="")
    return url[:start] + userinfo + url[at:]


def redis_client(url: str, *, asynchronous: bool, block_s: float = 0.0) -> Any:
    """A Redis or Redis Cluster client (blocking or asyncio) for `url`.

    `block_s`: the longest blocking command the caller sends (XREADGROUP BLOCK); the
    socket timeout is kept above it.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    masked = mask_url(url)
    timeout = SOCKET_TIMEOUT_S + block_s
    if scheme == CLUSTER_SCHEME:
        return _cluster_client(url, masked, asynchronous=asynchronous)
    if scheme not in REDIS_SCHEMES:
        raise InvalidInput(f"not a Redis URL: {masked!r}")
    url = encoded_userinfo(url)
    try:
        return _server_client(url, asynchronous=asynchronous, timeout=timeout)
    except ValueError as exc:  # redis-py's own URL parsing: its text may quote the URL
        raise InvalidInput(f"bad Redis URL {masked!r}: {mask_url(str(exc))}") from None


def _server_client(url: str, *, asynchronous: bool, timeout: float) -> Any:
    if asynchronous:
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio import Redis as AsyncRedis

        # A burst waits for a free connection instead of failing with "Too many
        # connections"; each command holds one for a single round trip.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=ASYNC_MAX_CONNECTIONS,
            timeout=timeout,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=timeout,
            **_retry_options(asynchronous=True),
        )
        return AsyncRedis.from_pool(pool)
    from redis import Redis

    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=timeout,
        **_retry_options(asynchronous=False),
    )
