"""The ``stratus_api_tokens`` table: hashed tokens with a name and a role.

    stratus_api_tokens (id, name, role, token_sha256, created_at, created_by,
                        revoked_at, revoked_by)

A revoked token stays in the table (who revoked it, when) but no longer authenticates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import asyncpg

from libs.events.schema import API_TOKENS_DDL, apply_ddl

from .errors import AuthStoreError, UnknownToken
from .files import write_token_file
from .tokens import Principal, Role, hash_token, new_token

# Advisory lock keys, namespaced like libs.events.schema's and libs.secrets'.
_SCHEMA_LOCK = 0x5354_0020
_BOOTSTRAP_LOCK = 0x5354_0021
BOOTSTRAP_NAME = "local-admin"

_SCHEMA = API_TOKENS_DDL  # the one text, in libs.events.schema's migration list
_COLUMNS = "id, name, role, created_at, created_by, revoked_at, revoked_by"
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class TokenInfo:
    """A token's record (never its value)."""

    id: int
    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str


def _info(row: Any) -> TokenInfo:
    return TokenInfo(
        id=row["id"], name=row["name"], role=cast(Role, row["role"]), created_at=row["created_at"],
        created_by=row["created_by"], revoked_at=row["revoked_at"], revoked_by=row["revoked_by"],
    )  # fmt: skip


async def ensure_schema(pool: asyncpg.Pool) -> None:
    try:
        await apply_ddl(pool, _SCHEMA_LOCK, _SCHEMA)
    except _DB_ERRORS as exc:
        raise AuthStoreError(f"cannot create the API tokens table: {exc}") from exc


async def _insert(
    conn: asyncpg.Connection | asyncpg.Pool, name: str, role: Role, created_by: str
) -> tuple[TokenInfo, str]:
    token = new_token()
    row = await conn.fetchrow(
        f"INSERT INTO stratus_api_tokens (name, role, token_sha256, created_by) VALUES ($1, $2, $3, $4) "
        f"RETURNING {_COLUMNS}",
        name, role, hash_token(token), created_by,
    )  # fmt: skip
    return _info(row), token


async def create_token(
    db: asyncpg.Pool | asyncpg.Connection, name: str, role: Role, *, created_by: str = ""
) -> tuple[TokenInfo, str]:
    """A new token: its record and its value (shown once, never stored). ``db`` may be a
    connection in a transaction, so the audit event commits with the token."""
    try:
        return await _insert(db, name, role, created_by)
    except _DB_ERRORS as exc:
        raise AuthStoreError(f"cannot create an API token: {exc}") from exc


async def list_tokens(pool: asyncpg.Pool, *, include_revoked: bool = False) -> list[TokenInfo]:
    where = "" if include_revoked else "WHERE revoked_at IS NULL"
    try:
        rows = await pool.fetch(f"SELECT {_COLUMNS} FROM stratus_api_tokens {where} ORDER BY id")
    except _DB_ERRORS as exc:
        raise AuthStoreError(f"cannot list the API tokens: {exc}") from exc
    return [_info(r) for r in rows]


async def revoke_token(
    db: asyncpg.Pool | asyncpg.Connection, token_id: int, *, revoked_by: str = ""
) -> TokenInfo:
    try:
        row = await db.fetchrow(
            f"UPDATE stratus_api_tokens SET revoked_at = now(), revoked_by = $2 "
            f"WHERE id = $1 AND revoked_at IS NULL RETURNING {_COLUMNS}",
            token_id, revoked_by,
        )  # fmt: skip
    except _DB_ERRORS as exc:
        raise AuthStoreError(f"cannot revoke API token {token_id}: {exc}") from exc
    if row is None:
        raise UnknownToken(f"no live API token has id {token_id} (`stratus auth list` shows them)")
    return _info(row)


async def lookup(pool: asyncpg.Pool, token: str) -> Principal | None:
    """Who ``token`` stands for, or None (unknown or revoked)."""
    try:
        row = await pool.fetchrow(
            "SELECT id, name, role FROM stratus_api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
            hash_token(token),
        )
    except _DB_ERRORS as exc:
        raise AuthStoreError(f"cannot check the API token: {exc}") from exc
    if row is None:
        return None
    return Principal(token_id=row["id"], name=row["name"], role=cast(Role, row["role"]))


async def bootstrap_admin(pool: asyncpg.Pool, path: Path) -> TokenInfo | None:
    """The first admin token, written to ``path`` (0600), when the table has no live token.

    Nothing happens once any live token exists, so a restart or a second API never mints
    another; the file is written inside the transaction, so a failed write leaves no token.
    """
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK)
            live = await conn.fetchval("SELECT count(*) FROM stratus_api_tokens WHERE revoked_at IS NULL")
            if live:
                return None
            info, token = await _insert(conn, BOOTSTRAP_NAME, "admin", "bootstrap")
            write_token_file(path, token)
            return info
    except _DB_ERRORS as exc:
        raise AuthStoreError(f"cannot create the first admin token: {exc}") from exc
