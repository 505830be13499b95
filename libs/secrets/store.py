"""The tables: a data key per service, and the values it encrypts.

    stratus_secret_keys (service, key_encrypted)               the service's Fernet data key,
                                                               encrypted by the master key file
    stratus_secrets     (service, version, name, value_encrypted)  values, encrypted by the data key

Env secrets are stored under their name; probe header values under ``header:<Header-Name>``
(env names cannot contain ':', so the two never collide). ``purge_service`` deletes a
service's data key and values: copies of the ciphertext (backups, WAL) no longer decrypt.
Values written before data keys existed (encrypted by the master key itself) still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeAlias

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from libs.events.schema import SECRETS_DDL, apply_ddl

from .errors import SecretsStoreError, SecretUnreadable
from .keys import key_path, load_or_create_keys, master_keyring

HEADER_PREFIX = "header:"
_DATA_KEY = "SELECT key_encrypted FROM stratus_secret_keys WHERE service = $1"

# Advisory lock keys (namespaced like libs.events.schema's): creating the tables, and rotation
# (exclusive) against writers of data keys (shared), so no data key escapes a rotation.
_SCHEMA_LOCK = 0x5354_0010
ROTATION_LOCK = 0x5354_0011

_SCHEMA = SECRETS_DDL  # the one text, in libs.events.schema's migration list

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def ensure_schema(conn: Conn) -> None:
    """Create the secrets tables if missing (safe when several processes start together)."""
    try:
        await apply_ddl(conn, _SCHEMA_LOCK, _SCHEMA)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SecretsStoreError(f"cannot create the secrets tables: {exc}") from exc


def _unwrap(master: MultiFernet, token: bytes, service: str, home: Path) -> Fernet:
    try:
        return Fernet(master.decrypt(token))
    except InvalidToken as exc:
        raise SecretUnreadable(
            f"cannot decrypt the data key of service {service!r} with the keys in {key_path(home)}: "
            "it was encrypted with another key file (copy the API's key file here)"
        ) from exc


async def service_data_key(conn: asyncpg.Connection, service: str, home: Path) -> Fernet:
    """The data key of ``service``, created on first use. Call inside a transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ROTATION_LOCK)
    master = master_keyring(home)  # read after the lock: a finished rotation's file
    token = await conn.fetchval(_DATA_KEY, service)
    if token is None:
        await conn.execute(
            "INSERT INTO stratus_secret_keys (service, key_encrypted) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            service,
            master.encrypt(Fernet.generate_key()),
        )
        token = await conn.fetchval(_DATA_KEY, service)
    return _unwrap(master, bytes(token), service, home)


async def store_secrets(
    conn: asyncpg.Connection,
    service: str,
    version: int,
    secrets: Mapping[str, str],
    home: Path,
    *,
    probe_headers: Mapping[str, str] | None = None,
) -> list[str]:
    """Replace the secrets (env values and probe header values) of ``service`` at ``version``.

    Returns the env names, sorted. Run it inside the transaction that appends the event naming
    them, so both commit together. The tables must exist (``ensure_schema``), since DDL inside
    the caller's transaction would hold locks until its commit.
    """
    await conn.execute("DELETE FROM stratus_secrets WHERE service = $1 AND version = $2", service, version)
    values = dict(secrets)
    values.update({HEADER_PREFIX + name: value for name, value in (probe_headers or {}).items()})
    if values:
        fernet = await service_data_key(conn, service, home)
        await conn.executemany(
            "INSERT INTO stratus_secrets (service, version, name, value_encrypted) VALUES ($1, $2, $3, $4)",
            [(service, version, name, fernet.encrypt(v.encode())) for name, v in sorted(values.items())],
        )
    return sorted(secrets)


async def _load_all(conn: Conn, service: str, version: int, home: Path) -> dict[str, str]:
    try:
        return await _load_once(conn, service, version, home)
    except SecretUnreadable:
        # A rotation may have finished between our read of the rows and of the key file (the
        # rows under the old key, the file holding only the new one): read both again.
        return await _load_once(conn, service, version, home)


async def _load_once(conn: Conn, service: str, version: int, home: Path) -> dict[str, str]:
    try:
        rows = await conn.fetch(
            "SELECT name, value_encrypted FROM stratus_secrets WHERE service = $1 AND version = $2",
            service,
            version,
        )
        if not rows:
            return {}
        token = await conn.fetchval(_DATA_KEY, service)
    except asyncpg.UndefinedTableError:
        return {}
    except (OSError, asyncpg.PostgresError) as exc:
        raise SecretsStoreError(f"cannot read the secrets of service {service!r}: {exc}") from exc
    keys = [Fernet(k) for k in load_or_create_keys(home)]  # values from before data keys
    if token is not None:
        keys.insert(0, _unwrap(master_keyring(home), bytes(token), service, home))
    fernet = MultiFernet(keys)
    out: dict[str, str] = {}
    for row in rows:
        try:
            out[row["name"]] = fernet.decrypt(bytes(row["value_encrypted"])).decode()
        except InvalidToken as exc:
            raise SecretUnreadable(
                f"cannot decrypt secret {row['name']!r} of service {service!r} version {version}: "
                f"it was encrypted with another key than those in {key_path(home)} "
                "(copy the API's key file here)"
            ) from exc
    return out


async def load_secrets(conn: Conn, service: str, version: int, home: Path) -> dict[str, str]:
    """The decrypted env secrets of ``service`` at ``version`` ({} when it has none)."""
    values = await _load_all(conn, service, version, home)
    return {k: v for k, v in values.items() if not k.startswith(HEADER_PREFIX)}


async def load_probe_headers(conn: Conn, service: str, version: int, home: Path) -> dict[str, str]:
    """The decrypted readiness probe headers of ``service`` at ``version`` ({} when none)."""
    values = await _load_all(conn, service, version, home)
    return {k[len(HEADER_PREFIX) :]: v for k, v in values.items() if k.startswith(HEADER_PREFIX)}


async def purge_service(conn: asyncpg.Connection, service: str) -> int:
    """Delete the data key and every stored value of ``service``; returns how many values went.

    Run it in the transaction that records the purge. Afterwards nothing decrypts the
    service's old ciphertext; a service created again under the name gets a new data key.
    """
    try:
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", ROTATION_LOCK)
        await conn.execute("DELETE FROM stratus_secret_keys WHERE service = $1", service)
        result: str = await conn.execute("DELETE FROM stratus_secrets WHERE service = $1", service)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SecretsStoreError(f"cannot purge the secrets of service {service!r}: {exc}") from exc
    return int(result.rsplit(" ", 1)[-1])
