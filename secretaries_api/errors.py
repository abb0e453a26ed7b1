"""Library and request errors as JSON `{"error": {"code", "message"}}` with fitting statuses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from secretaries_core.errors import (
    BackendUnavailable,
    Conflict,
    InactiveSecretary,
    Interrupted,
    InvalidInput,
    ModelError,
    NoDefaultSecretary,
    NotFound,
    QuotaExceeded,
    SchemaOutOfDate,
    SecretariesError,
    error_code,
)
from secretaries_core.plumbing.db import is_busy, is_disconnect, unavailable
from secretaries_core.plumbing.timeutil import utcnow
from secretaries_core.tools.errors import ToolError

log = logging.getLogger(__name__)

# Most specific first: ModelUnavailable is both a ModelError and a BackendUnavailable.
STATUS_BY_ERROR: list[tuple[type[SecretariesError], int]] = [
    (BackendUnavailable, 503),
    (SchemaOutOfDate, 503),
    (NotFound, 404),
    (QuotaExceeded, 429),
    (Interrupted, 409),
    (Conflict, 409),
    (InactiveSecretary, 409),
    (NoDefaultSecretary, 409),
    (InvalidInput, 422),
    (ModelError, 502),
    (ToolError, 502),  # a tool server that cannot be reached or refuses
]


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one error shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def status_for(exc: SecretariesError) -> int:
    """The HTTP status of a library error."""
    for kind, status in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return status
    return 400


# A library error may end with what a CLI user should run next (`; see `secretaries list
# --all` for the catalog`): an API client has no such command, so it is left out.
def for_api_clients(exc: SecretariesError) -> str:
    """The error's message without its CLI hint (`SecretariesError.hint`)."""
    return exc.message if exc.hint else str(exc)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(SecretariesError)
    async def library_error(_request: Request, exc: SecretariesError) -> JSONResponse:
        response = error_response(status_for(exc), error_code(exc), for_api_clients(exc))
        if isinstance(exc, QuotaExceeded) and exc.resets_at is not None:
            # Clients (and Telegram-side retry logic) can wait exactly until the reset.
            wait = max(0, int((exc.resets_at - utcnow()).total_seconds()))
            response.headers["Retry-After"] = str(wait)
        return response

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # A driver error that escaped the library's own translation: still JSON, still 503
        # when the database is down or locked, and never the driver's text with a URL.
        services = getattr(request.app.state, "services", None)
        if services is not None and (is_disconnect(exc) or is_busy(exc)):
            found = unavailable(services.registry.engine, exc)
            return error_response(503, "BackendUnavailable", str(found))
        log.error("database error", exc_info=exc)
        return error_response(500, "InternalError", "database error; see the server log")

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "InternalError", "internal error; see the server log")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "InvalidInput", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed"}.get(
            exc.status_code, "HTTPError"
        )
        response = error_response(exc.status_code, code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response
