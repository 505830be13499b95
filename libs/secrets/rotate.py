"""Rotating the master key: re-encrypt every data key under a new one.

1. The key file becomes ``[new, old...]``: everything stays readable, new data keys use ``new``.
2. Under the exclusive rotation lock (writers of data keys hold it shared), every data key is
   re-encrypted under ``new``; values written before data keys existed move under their
   service's data key. One transaction: all or nothing.
3. The key file becomes ``[new]``.

Interrupted after 1 or 2, the file still holds every key needed; running it again finishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import SecretsStoreError, SecretUnreadable
from .keys import load_or_create_keys, write_keys
from .store import ROTATION_LOCK, ensure_schema, service_data_key


@dataclass(frozen=True, slots=True)
class Rotation:
    data_keys: int  # data keys re-encrypted under the new master key
    migrated_values: int  # values moved from the master key to their service's data key
    dropped_keys: int  # old master keys removed from the file


async def rotate_master_key(pool: asyncpg.Pool, home: Path) -> Rotation:
    await ensure_schema(pool)
    old = load_or_create_keys(home)
    new = Fernet.generate_key()
    write_keys(home, [new, *old])
    ring = MultiFernet([Fernet(k) for k in (new, *old)])
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", ROTATION_LOCK)
            rows = await conn.fetch("SELECT service, key_encrypted FROM stratus_secret_keys FOR UPDATE")
            for row in rows:
                try:
                    token = ring.rotate(bytes(row["key_encrypted"]))
                except InvalidToken as exc:
                    raise SecretUnreadable(
                        f"the data key of service {row['service']!r} decrypts with no key in the file; "
                        "nothing was rotated (restore the key file that encrypted it)"
                    ) from exc
                await conn.execute(
                    "UPDATE stratus_secret_keys SET key_encrypted = $2 WHERE service = $1",
                    row["service"],
                    token,
                )
            migrated = await _migrate_legacy_values(conn, ring, home)
    except asyncpg.PostgresError as exc:
        raise SecretsStoreError(f"rotation failed, nothing changed in Postgres: {exc}") from exc
    write_keys(home, [new])
    return Rotation(data_keys=len(rows), migrated_values=migrated, dropped_keys=len(old))


async def _migrate_legacy_values(conn: asyncpg.Connection, ring: MultiFernet, home: Path) -> int:
    """Values encrypted by a master key directly (before data keys): re-encrypt by data key."""
    rows = await conn.fetch(
        "SELECT service, version, name, value_encrypted FROM stratus_secrets ORDER BY service FOR UPDATE"
    )
    migrated = 0
    for row in rows:
        try:
            plain = ring.decrypt(bytes(row["value_encrypted"]))
        except InvalidToken:
            continue  # under its data key already
        # The lock is held exclusively here; service_data_key's shared request is re-entrant.
        fernet = await service_data_key(conn, row["service"], home)
        await conn.execute(
            "UPDATE stratus_secrets SET value_encrypted = $4"
            " WHERE service = $1 AND version = $2 AND name = $3",
            row["service"], row["version"], row["name"], fernet.encrypt(plain),
        )  # fmt: skip
        migrated += 1
    return migrated
