"""The OpenAPI document's error responses, true per route.

Every route may answer 500; the protected ones 401 (no or a bad bearer token) and 503 (a
backend down); a route with a body 408 (sent too slowly), 413 (too large) and 422; a route
with parameters 422; 404, 409, 429 and 502 only where the route can meet the error they
stand for. `/healthz` and `/metrics` are not protected: no 401 there.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from secretaries_api.schemas import ErrorOut

TEXTS = {
    401: "Missing or bad bearer token",
    404: "Unknown user, secretary or reply",
    408: "The request body did not arrive in time",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    422: "Invalid input",
    429: "Over a daily quota",
    500: "Internal error (details in the server's log, never in the answer)",
    502: "The secretary's model failed",
    503: "A backend cannot be reached",
}
PUBLIC = ("/healthz", "/metrics")
# Routes that may meet an unknown user or secretary beyond their path parameters.
FINDS = {
    "/api/messages",
    "/api/feedback",
    "/api/migrate-users",
    "/api/usage",
    "/api/contexts/purge",
}
CONFLICTS = ("/api/secretaries", "/api/messages", "/api/migrate-users", "/api/tools")
ASKS_THE_MODEL = ("/api/messages", "/replay")


def codes_for(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses `method path` can answer."""
    codes = {500}
    if path in PUBLIC:
        return codes
    codes |= {401, 503}
    if "requestBody" in operation:
        codes |= {408, 413, 422}
    if operation.get("parameters"):
        codes.add(422)
    params = {p.get("name") for p in operation.get("parameters", [])}
    if {"user_id", "secretary_id", "secretary"} & params or path in FINDS:
        codes.add(404)
    if path.startswith("/api/tools/{name}"):
        codes |= {404, 502}  # an unknown tool; a tool server that fails
    writes = method != "get"
    if writes and (path.startswith(CONFLICTS) or "/secretary/" in path):
        codes.add(409)
    if path == "/api/messages":
        codes.add(429)
    if path.endswith(ASKS_THE_MODEL):
        codes.add(502)
    return codes


def install(app: FastAPI) -> None:
    """Generate `app`'s document once, with each route's true error responses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        error = {"$ref": "#/components/schemas/ErrorOut"}
        found = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(found.pop("$defs", {}))
        schemas["ErrorOut"] = found
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for code in sorted(codes_for(path, method, operation)):
                    responses.setdefault(
                        str(code),
                        {
                            "description": TEXTS[code],
                            "content": {"application/json": {"schema": error}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
