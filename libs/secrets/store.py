"""The table ``stratus_secrets``: encrypted values per (service, version, name)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

from .errors import SecretsStoreError, SecretUnreadable
from .keys import key_path, load_or_create_key

# Advisory lock key for creating the table (namespaced like libs.events.schema's).
_SCHEMA_LOCK = 0x5354_0010

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stratus_secrets (
    service          text NOT NULL,
    version          integer NOT NULL,
    name             text NOT NULL,
    value_encrypted  bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, version, name)
)
"""


async def ensure_schema(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Create the secrets tables if missing (safe when several processes start together)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            await ensure_schema(c)
        return
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(_SCHEMA)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SecretsStoreError(f"cannot create the secrets tables: {exc}") from exc


async def store_secrets(
    conn: asyncpg.Connection, service: str, version: int, secrets: Mapping[str, str], home: Path
) -> list[str]:
    """Replace the secrets of ``service`` at ``version``; returns their names, sorted.

    Run it inside the transaction that appends the event naming them, so both commit together.
    The table must exist (``ensure_schema``), since DDL inside the caller's transaction would
    hold locks until its commit.
    """
    await conn.execute("DELETE FROM stratus_secrets WHERE service = $1 AND version = $2", service, version)
    names = sorted(secrets)
    if names:
        fernet = Fernet(load_or_create_key(home))
        await conn.executemany(
            "INSERT INTO stratus_secrets (service, version, name, value_encrypted) VALUES ($1, $2, $3, $4)",
            [(service, version, name, fernet.encrypt(secrets[name].encode())) for name in names],
        )
    return names


async def load_secrets(
    pool_or_conn: asyncpg.Pool | asyncpg.Connection, service: str, version: int, home: Path
) -> dict[str, str]:
    """The decrypted secrets of ``service`` at ``version`` ({} when it has none)."""
    try:
        rows = await pool_or_conn.fetch(
            "SELECT name, value_encrypted FROM stratus_secrets WHERE service = $1 AND version = $2",
            service,
            version,
        )
    except asyncpg.UndefinedTableError:
        return {}
    if not rows:
        return {}
    fernet = Fernet(load_or_create_key(home))
    out: dict[str, str] = {}
    for row in rows:
        try:
            out[row["name"]] = fernet.decrypt(bytes(row["value_encrypted"])).decode()
        except InvalidToken as exc:
            raise SecretUnreadable(
                f"cannot decrypt secret {row['name']!r} of service {service!r} version {version} "
                f"with the key in {key_path(home)}: it was encrypted with another key "
                "(copy the API's key file here)"
            ) from exc
    return out
