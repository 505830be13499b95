"""Secret env values: kept out of the event log, encrypted at rest in Postgres.

What counts as a secret (the rule, also in ``stratus up --help``):

* every value under ``secrets:`` in the service YAML, and
* every ``envs:`` / ``--env`` value whose NAME contains, case-insensitively, one of
  ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD``, ``KEY`` or ``CREDENTIAL``
  (``HF_TOKEN``, ``OPENAI_API_KEY``, ``DB_PASSWORD`` ...).

Where secrets go:

* ``ServiceRequested.spec`` / ``ServiceUpdateRequested.spec`` carry only non-secret ``envs``;
  every secret appears under ``secrets`` as ``"<redacted>"`` and its NAME in ``secret_envs``.
* The values go to the table ``stratus_secrets(service, version, name, value_encrypted)``,
  written in the same transaction as the event, encrypted with Fernet (AES-128-CBC + HMAC) under
  the key file ``$STRATUS_HOME/secrets.key`` (created 0600 on first use). Every process that
  needs the values (the provisioner) shares ``STRATUS_HOME`` or a copy of that key file.
* Whoever launches a replica calls ``load_secrets(pool, service, version, home)`` and merges
  the result over ``spec.envs``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

SECRET_NAME_MARKERS: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL")
KEY_FILE_NAME = "secrets.key"
REDACTED = "<redacted>"

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


class SecretsError(Exception):
    """The key file is unusable, or a stored value cannot be decrypted with it."""


def looks_secret(name: str) -> bool:
    """True when an env var's NAME says its value is a secret (see the module docstring)."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_NAME_MARKERS)


@dataclass(frozen=True, slots=True)
class SplitEnvs:
    """A spec's environment split into what may be logged and what may not."""

    public: dict[str, str]
    secret: dict[str, str]

    @property
    def secret_names(self) -> list[str]:
        return sorted(self.secret)


def split_envs(envs: Mapping[str, str], secrets: Mapping[str, str]) -> SplitEnvs:
    public = {k: v for k, v in envs.items() if not looks_secret(k)}
    secret = {k: v for k, v in envs.items() if looks_secret(k)}
    secret.update(secrets)
    return SplitEnvs(public=public, secret=secret)


def redact_spec_dict(spec: Mapping[str, Any], split: SplitEnvs) -> dict[str, Any]:
    """The spec dict an event may carry: public envs only, every secret NAME redacted."""
    out = dict(spec)
    out["envs"] = dict(split.public)
    out["secrets"] = {name: REDACTED for name in split.secret_names}
    return out


# --------------------------------------------------------------------------- the key file


def key_path(home: Path) -> Path:
    return home / KEY_FILE_NAME


def load_or_create_key(home: Path) -> bytes:
    """The Fernet key in ``<home>/secrets.key``, created (0600, atomically) on first use."""
    path = key_path(home)
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_key(path)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError as exc:
        raise SecretsError(
            f"{path} is not a valid secrets key (32 url-safe base64 bytes expected); "
            "restore the original key file, or remove it to start over (stored secrets become unreadable)"
        ) from exc
    return key


# --------------------------------------------------------------------------- the table


async def ensure_schema(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Create ``stratus_secrets`` if missing (safe when several processes start together)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            await ensure_schema(c)
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(_SCHEMA)


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
            raise SecretsError(
                f"cannot decrypt secret {row['name']!r} of service {service!r} version {version} "
                f"with the key in {key_path(home)}: it was encrypted with another key "
                "(copy the API's key file here)"
            ) from exc
    return out


async def delete_secrets(conn: asyncpg.Connection | asyncpg.Pool, service: str) -> int:
    """Forget every secret of ``service`` (after it terminated); returns how many rows went."""
    try:
        result: str = await conn.execute("DELETE FROM stratus_secrets WHERE service = $1", service)
    except asyncpg.UndefinedTableError:
        return 0
    return int(result.rsplit(" ", 1)[-1])
