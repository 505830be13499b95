"""Who may call the API: a bearer token (``libs.auth``) on every protected router.

``authorize`` is a route dependency, applied per router in ``create_app`` (not globally): the
health check, the docs and ``/v1/bootstrap`` (its own one-time tokens) are left out, every
other router gets it. Reads (GET, HEAD) need any live token; anything else needs ``admin``.
The principal is kept on ``request.state.principal`` and written into the intent events.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from libs.auth import AuthStoreError, Principal, lookup

from .errors import ApiError, Unavailable
from .models import ErrorOut

READ_METHODS = frozenset({"GET", "HEAD"})

BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API token: `stratus auth create`; the local stack's admin token is in "
    "STRATUS_HOME/auth/admin.token. Role `viewer` may read, `admin` may also change things.",
)


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No API token, or an unknown or revoked one"},
    403: {"model": ErrorOut, "description": "The token's role may not do this (viewer tokens only read)"},
}


async def authorize(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> Principal:
    if credentials is None:
        raise Unauthorized(
            "this route needs an API token: send `Authorization: Bearer <token>` "
            "(the CLI reads STRATUS_API_TOKEN, else STRATUS_HOME/auth/admin.token)"
        )
    pool = request.app.state.deps.store.pool
    try:
        principal = await lookup(pool, credentials.credentials)
    except AuthStoreError as exc:
        raise Unavailable(f"cannot check the API token now ({exc}); retry shortly") from exc
    if principal is None:
        raise Unauthorized("the API token is unknown or was revoked: `stratus auth list` shows live tokens")
    if request.method not in READ_METHODS and not principal.may_mutate:
        raise Forbidden(
            f"token {principal.label!r} has role {principal.role}: it may only read; "
            f"{request.method} {request.url.path} needs an admin token"
        )
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authorize)]
PROTECTED = [Depends(authorize)]
