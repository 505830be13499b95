"""``/v1/auth/tokens``: create, list and revoke API tokens (admin only); ``/v1/auth/whoami``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from libs.auth import AuthStoreError, Principal, Role, TokenInfo, UnknownToken
from libs.auth import create_token as store_create
from libs.auth import list_tokens as store_list
from libs.auth import revoke_token as store_revoke
from libs.events.types import AUTH_STREAM, ApiTokenCreated, ApiTokenRevoked

from ..auth import AUTH_ERRORS, Caller, Forbidden
from ..deps import ApiDeps
from ..errors import Conflict, NotFound, Unavailable

log = logging.getLogger("stratus.api")

# Each change is audited twice, never with the token: the table records who created and revoked
# each token, and an ApiTokenCreated / ApiTokenRevoked event on the ``auth`` stream, appended in
# the same transaction, puts it in the event log.


class TokenIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$",
        description="Who or what uses it (letters, digits, _ . @ -); shown in the event log.",
    )  # fmt: skip
    role: Role = Field(default="viewer", description="admin: read and change; viewer: read only.")


class TokenOut(BaseModel):
    id: int
    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str = ""


class NewTokenOut(TokenOut):
    token: str = Field(description="The bearer token. Shown once: only its hash is kept.")


class WhoAmIOut(BaseModel):
    id: int
    name: str
    role: Role


def _out(info: TokenInfo) -> TokenOut:
    return TokenOut(
        id=info.id, name=info.name, role=info.role, created_at=info.created_at,
        created_by=info.created_by, revoked_at=info.revoked_at, revoked_by=info.revoked_by,
    )  # fmt: skip


def _admin(caller: Principal) -> None:
    if not caller.may_mutate:
        raise Forbidden(
            f"token {caller.label!r} has role {caller.role}: managing tokens needs an admin token"
        )


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/auth", tags=["auth"], responses=AUTH_ERRORS)
    pool = deps.store.pool
    store = deps.store

    @router.get("/whoami", summary="The token this request was made with (its id, name and role)")
    async def whoami(caller: Caller) -> WhoAmIOut:
        return WhoAmIOut(id=caller.token_id, name=caller.name, role=caller.role)

    @router.post("/tokens", status_code=201, summary="Create an API token (admin)")
    async def create_token(body: TokenIn, caller: Caller) -> NewTokenOut:
        _admin(caller)
        try:
            async with store.transaction() as tx:
                info, token = await store_create(tx.conn, body.name, body.role, created_by=caller.label)
                await tx.append(AUTH_STREAM, [ApiTokenCreated(
                    service="", token_id=info.id, name=info.name, role=info.role, principal=caller.label,
                )])  # fmt: skip
        except AuthStoreError as exc:
            raise Unavailable(str(exc)) from exc
        log.info("API token %d (%r, %s) created by %s", info.id, info.name, info.role, caller.label)
        return NewTokenOut(**_out(info).model_dump(), token=token)

    @router.get("/tokens", summary="Live API tokens (admin); never their values")
    async def list_tokens(caller: Caller, all: bool = False) -> list[TokenOut]:
        _admin(caller)
        try:
            return [_out(t) for t in await store_list(pool, include_revoked=all)]
        except AuthStoreError as exc:
            raise Unavailable(str(exc)) from exc

    @router.delete("/tokens/{token_id}", summary="Revoke an API token (admin)")
    async def revoke_token(token_id: Annotated[int, Path(ge=1)], caller: Caller) -> TokenOut:
        _admin(caller)
        try:
            live = await store_list(pool)
            admins = [t.id for t in live if t.role == "admin"]
            if admins == [token_id]:
                raise Conflict(
                    f"token {token_id} is the last admin token: create another admin token first "
                    "(`stratus auth create --role admin --name NAME`), or nobody could manage tokens"
                )
            async with store.transaction() as tx:
                gone = await store_revoke(tx.conn, token_id, revoked_by=caller.label)
                await tx.append(AUTH_STREAM, [ApiTokenRevoked(
                    service="", token_id=gone.id, name=gone.name, role=gone.role, principal=caller.label,
                )])  # fmt: skip
            log.info("API token %d (%r, %s) revoked by %s", gone.id, gone.name, gone.role, caller.label)
            return _out(gone)
        except UnknownToken as exc:
            raise NotFound(str(exc)) from exc
        except AuthStoreError as exc:
            raise Unavailable(str(exc)) from exc

    return router
