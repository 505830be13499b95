"""API errors: every failure is JSON ``{"error": code, "message": ..., "issues": [...]}``.

The message always says what to fix (a field, a name to check, a command to run).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.events.errors import ConcurrencyConflict, StoreUnavailable
from libs.spec import SpecError

from .models import ErrorOut, IssueOut

log = logging.getLogger("stratus.api")


class ApiError(Exception):
    status_code = 400
    code = "bad_request"
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, issues: Sequence[IssueOut] = (), code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = list(issues)
        if code is not None:
            self.code = code

    def body(self) -> ErrorOut:
        return ErrorOut(error=self.code, message=self.message, issues=self.issues)


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class Invalid(ApiError):
    status_code = 422
    code = "invalid_request"


class Unavailable(ApiError):
    status_code = 503
    code = "unavailable"


def spec_invalid(exc: SpecError) -> Invalid:
    issues = [IssueOut(field=i.path, message=i.message, line=exc.line_of(i.path)) for i in exc.issues]
    return Invalid(str(exc), issues=issues, code="invalid_spec")


class AsciiJSONResponse(JSONResponse):
    """Non-ASCII escaped: a message quoting the input stays encodable even with lone surrogates
    (``"\\ud800"`` is valid JSON but not UTF-8)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _json(status: int, body: ErrorOut) -> JSONResponse:
    return AsciiJSONResponse(status_code=status, content=body.model_dump(mode="json"))


def _field_path(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_issue(error: Mapping[str, Any]) -> IssueOut:
    """One pydantic/FastAPI error as an issue, in one style whichever parser found it.

    A JSON syntax error is the body's (FastAPI puts the character position where a field goes);
    a body that is not an object says so the same way for every route.
    """
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    loc = tuple(error.get("loc", ()))
    if kind == "json_invalid":
        detail = str(ctx.get("error") or "cannot be decoded")
        if len(loc) == 2 and loc[0] == "body" and isinstance(loc[1], int):
            detail += f" at character {loc[1]}"
        return IssueOut(field="body", message=f"not valid JSON: {detail}")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return IssueOut(field=_field_path(loc), message="must be a JSON object")
    return IssueOut(field=_field_path(loc), message=str(error.get("msg", "invalid")))


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ErrorOut:
    # Never echo the offending input back: it may hold a secret.
    issues = [validation_issue(e) for e in errors]
    lines = "; ".join(f"{i.field}: {i.message}" for i in issues)
    return ErrorOut(error="invalid_request", message=f"invalid request: {lines}", issues=issues)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    response = _json(exc.status_code, exc.body())
    response.headers.update(exc.headers)
    return response


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _json(422, validation_error(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = (
            f"no such route: {request.method} {request.url.path}; "
            "the API is described at /docs and /openapi.json"
        )
        return _json(404, ErrorOut(error="not_found", message=message))
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the methods it takes"
        return _json(405, ErrorOut(error="method_not_allowed", message=message))
    return _json(exc.status_code, ErrorOut(error="http_error", message=str(exc.detail)))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    message = f"{exc}; someone else changed it at the same time: read it again and retry"
    return _json(409, ErrorOut(error="conflict", message=message))


async def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    log.warning("event store unavailable: %s", exc)
    message = f"the event store is unavailable ({exc}); retry shortly, or check Postgres (DATABASE_URL)"
    return _json(503, ErrorOut(error="unavailable", message=message))


_CONNECTION_ERRORS = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Anything else: still JSON (the server logs the traceback)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return await _store_unavailable(request, exc)
    message = (
        f"internal error ({type(exc).__name__}) on {request.method} {request.url.path}; "
        "the API's log has the details (`stratus logs --component api`)"
    )
    return _json(500, ErrorOut(error="internal", message=message))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ConcurrencyConflict, _conflict)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Exception, _unexpected)
