"""``/v1/services/{name}/keys``: the endpoint API keys a service's router endpoint requires.

Create returns the key once (only a hash is kept, ``libs/secrets/endpoint.py``); list shows ids,
names and dates; delete revokes. Each change appends ``EndpointKeysChanged`` (key ids only) in
the same transaction, and routers reload the keys on it. A service that has ever had a key
requires one (`Authorization: Bearer <key>`); rotation: create the new key, switch clients,
revoke the old one (both are valid in between).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from libs.events.types import EndpointKeysChanged, service_stream
from libs.secrets import SecretsError
from libs.secrets.endpoint import (
    EndpointKeyInfo,
    create_endpoint_key,
    ensure_endpoint_schema,
    list_endpoint_keys,
    revoke_endpoint_key,
)

from .. import commands
from ..auth import Caller
from ..deps import ApiDeps
from ..errors import NotFound, Unavailable

ServiceName = Annotated[str, Path(description="The service.")]
KeyId = Annotated[str, Path(description="The key's id (``stratus keys list``).", pattern=r"^[0-9a-f]{8}$")]


class EndpointKeyIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$",
        description="Who uses the key (letters, digits, _ . @ -).",
    )  # fmt: skip


class EndpointKeyOut(BaseModel):
    key_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None = None


class NewEndpointKeyOut(EndpointKeyOut):
    key: str = Field(description="The key: send it as `Authorization: Bearer <key>`. Shown once.")
    position: int = Field(description="Log position of the EndpointKeysChanged event.")


class EndpointKeyListOut(BaseModel):
    service: str
    required: bool = Field(description="Whether the endpoint requires a key (it has ever had one).")
    keys: list[EndpointKeyOut]


class RevokedOut(BaseModel):
    service: str
    key_id: str
    position: int


def _out(info: EndpointKeyInfo) -> EndpointKeyOut:
    return EndpointKeyOut(
        key_id=info.key_id, name=info.name, created_at=info.created_at, revoked_at=info.revoked_at
    )


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/services/{name}/keys", tags=["endpoint keys"])
    ready = False

    async def schema() -> None:
        nonlocal ready
        if not ready:
            try:
                await ensure_endpoint_schema(deps.store.pool)
            except SecretsError as exc:
                raise Unavailable(str(exc)) from exc
            ready = True

    async def changed(conn: asyncpg.Connection, name: str, principal: str) -> EndpointKeysChanged:
        valid = await list_endpoint_keys(conn, name)
        return EndpointKeysChanged(service=name, key_ids=[k.key_id for k in valid], principal=principal)

    @router.post("", status_code=201, summary="Create an endpoint API key (shown once)")
    async def create_key(name: ServiceName, body: EndpointKeyIn, caller: Caller) -> NewEndpointKeyOut:
        commands.find_service(await commands.synced_state(deps), name)
        await schema()
        try:
            async with deps.store.transaction() as tx:
                key_id, key = await create_endpoint_key(tx.conn, name, body.name)
                result = await tx.append(service_stream(name), [await changed(tx.conn, name, caller.label)])
                infos = await list_endpoint_keys(tx.conn, name)
        except SecretsError as exc:
            raise Unavailable(str(exc)) from exc
        info = next(i for i in infos if i.key_id == key_id)
        await commands.settle(deps, result.last_position)
        return NewEndpointKeyOut(**_out(info).model_dump(), key=key, position=result.last_position)

    @router.get("", summary="The service's endpoint API keys (ids, names, dates; never the keys)")
    async def list_keys(
        name: ServiceName,
        all_: Annotated[bool, Query(alias="all", description="Include revoked keys.")] = False,
    ) -> EndpointKeyListOut:
        commands.find_service(await commands.synced_state(deps), name, live=False)
        try:
            infos = await list_endpoint_keys(deps.store.pool, name, include_revoked=True)
        except SecretsError as exc:
            raise Unavailable(str(exc)) from exc
        shown = [_out(i) for i in infos if all_ or i.revoked_at is None]
        return EndpointKeyListOut(service=name, required=bool(infos), keys=shown)

    @router.delete("/{key_id}", summary="Revoke an endpoint API key (routers refuse it from then on)")
    async def revoke_key(name: ServiceName, key_id: KeyId, caller: Caller) -> RevokedOut:
        commands.find_service(await commands.synced_state(deps), name, live=False)
        await schema()
        try:
            async with deps.store.transaction() as tx:
                if not await revoke_endpoint_key(tx.conn, name, key_id):
                    raise NotFound(
                        f"service {name!r} has no valid endpoint key {key_id!r} (`stratus keys list {name}`)"
                    )
                result = await tx.append(service_stream(name), [await changed(tx.conn, name, caller.label)])
        except SecretsError as exc:
            raise Unavailable(str(exc)) from exc
        await commands.settle(deps, result.last_position)
        return RevokedOut(service=name, key_id=key_id, position=result.last_position)

    return router
