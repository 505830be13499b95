"""Endpoint secrets: a service's TLS certificate and key, and its endpoint API keys.

    stratus_endpoint_tls  (service, version, cert_pem, key_encrypted)   the certificate (public)
                          and its private key, encrypted by the service's data key (store.py);
                          one row per service: the latest ``up``/``update`` that sent one
    stratus_endpoint_keys (service, key_id, name, key_hash, created_at, revoked_at)

An endpoint API key is ``stk_<key_id>_<43 url-safe characters>`` (32 random bytes), shown once
when created. Only ``sha256(PEPPER, service, key)`` is stored: the key has 256 bits of entropy,
so no per-key salt is needed, and binding the hash to the service means a key of one service
never opens another. A service that ever had a key requires one: revoking every key refuses
every request (it never silently reopens the endpoint). Creating a service under a name again
(``reset_endpoint``) forgets the keys and certificate of the earlier one; ``purge_endpoint``
deletes them with the service's other secrets.

Nothing here ever writes a key, a hash or a private key to an event or a log.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from cryptography.fernet import InvalidToken

from libs.events.schema import ENDPOINT_SECRETS_DDL, apply_ddl

from .errors import EndpointTlsInvalid, SecretsStoreError, SecretUnreadable
from .keys import master_keyring
from .store import Conn, _unwrap, service_data_key

KEY_PREFIX = "stk_"
PEPPER = b"stratus-endpoint-key-v1\0"
_SCHEMA_LOCK = 0x5354_0012

_SCHEMA = ENDPOINT_SECRETS_DDL  # the one text, in libs.events.schema's migration list


@dataclass(frozen=True, slots=True)
class EndpointKeyInfo:
    """What may be shown of a key: never the key nor its hash."""

    key_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class EndpointKeys:
    """What a router enforces: ``required`` once the service ever had a key; ``hashes`` valid."""

    required: bool
    hashes: frozenset[bytes]


@dataclass(frozen=True, slots=True)
class EndpointTls:
    version: int
    cert_pem: str
    key_pem: str


def _store_error(what: str, exc: BaseException) -> SecretsStoreError:
    return SecretsStoreError(f"cannot {what}: {exc}")


async def ensure_endpoint_schema(conn: Conn) -> None:
    """Create the endpoint tables if missing (safe when several processes start together)."""
    try:
        await apply_ddl(conn, _SCHEMA_LOCK, _SCHEMA)
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error("create the endpoint secrets tables", exc) from exc


# --------------------------------------------------------------------------- API keys


def key_hash(service: str, key: str | bytes) -> bytes:
    """The stored form of an endpoint API key of ``service``."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(PEPPER + service.encode() + b"\0" + raw).digest()


def new_key() -> tuple[str, str]:
    """A fresh ``(key_id, key)``."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


async def create_endpoint_key(conn: asyncpg.Connection, service: str, name: str) -> tuple[str, str]:
    """Add a key to ``service``; returns ``(key_id, key)`` (the only time the key is seen)."""
    for _ in range(5):  # a key_id collision (1 in 4 billion) draws again
        key_id, key = new_key()
        try:
            status: str = await conn.execute(
                "INSERT INTO stratus_endpoint_keys (service, key_id, name, key_hash) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING",
                service, key_id, name, key_hash(service, key),
            )  # fmt: skip
        except (OSError, asyncpg.PostgresError) as exc:
            raise _store_error(f"store an endpoint key of service {service!r}", exc) from exc
        if status.endswith(" 1"):
            return key_id, key
    raise SecretsStoreError(f"could not draw a free key id for service {service!r}")


async def list_endpoint_keys(
    conn: Conn, service: str, *, include_revoked: bool = False
) -> list[EndpointKeyInfo]:
    try:
        rows = await conn.fetch(
            "SELECT key_id, name, created_at, revoked_at FROM stratus_endpoint_keys WHERE service = $1 "
            "AND ($2 OR revoked_at IS NULL) ORDER BY created_at, key_id",
            service, include_revoked,
        )  # fmt: skip
    except asyncpg.UndefinedTableError:
        return []
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error(f"list the endpoint keys of service {service!r}", exc) from exc
    return [EndpointKeyInfo(r["key_id"], r["name"], r["created_at"], r["revoked_at"]) for r in rows]


async def revoke_endpoint_key(conn: asyncpg.Connection, service: str, key_id: str) -> bool:
    """Revoke a key; False when ``service`` has no such valid key."""
    try:
        status: str = await conn.execute(
            "UPDATE stratus_endpoint_keys SET revoked_at = now() "
            "WHERE service = $1 AND key_id = $2 AND revoked_at IS NULL",
            service, key_id,
        )  # fmt: skip
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error(f"revoke endpoint key {key_id!r} of service {service!r}", exc) from exc
    return status.endswith(" 1")


async def load_endpoint_keys(conn: Conn, service: str) -> EndpointKeys:
    """The hashes a router accepts for ``service`` (and whether it requires a key at all)."""
    try:
        rows = await conn.fetch(
            "SELECT key_hash, revoked_at FROM stratus_endpoint_keys WHERE service = $1", service
        )
    except asyncpg.UndefinedTableError:
        return EndpointKeys(False, frozenset())
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error(f"read the endpoint keys of service {service!r}", exc) from exc
    valid = frozenset(bytes(r["key_hash"]) for r in rows if r["revoked_at"] is None)
    return EndpointKeys(bool(rows), valid)


# --------------------------------------------------------------------------- TLS


def check_tls_pair(cert_pem: str, key_pem: str) -> None:
    """Raise ``EndpointTlsInvalid`` unless the PEM certificate and key make a TLS server."""
    if "BEGIN" not in cert_pem or "CERTIFICATE" not in cert_pem:
        raise EndpointTlsInvalid("tls certfile: not a PEM certificate (no BEGIN CERTIFICATE line)")
    if "PRIVATE KEY" not in key_pem:
        raise EndpointTlsInvalid("tls keyfile: not a PEM private key (no BEGIN ... PRIVATE KEY line)")
    server_context(cert_pem, key_pem)


def tls_pair_for(spec_has_tls: bool, cert_pem: str | None, key_pem: str | None) -> tuple[str, str] | None:
    """The pair a create/update request brings: required (and checked) when the spec has
    ``service.tls``, refused when it has not. The CLI reads the files at ``up``."""
    if not spec_has_tls:
        if cert_pem or key_pem:
            raise EndpointTlsInvalid("tls_cert_pem/tls_key_pem were sent but the spec has no service.tls")
        return None
    if not cert_pem or not key_pem:
        raise EndpointTlsInvalid(
            "service.tls is set: send the PEM contents of its certfile and keyfile as tls_cert_pem and "
            "tls_key_pem (`stratus up` reads the files)"
        )
    check_tls_pair(cert_pem, key_pem)
    return cert_pem, key_pem


def server_context(cert_pem: str, key_pem: str, context: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` serving ``cert_pem`` (loaded into ``context`` when given: new
    handshakes then use the new pair). The key goes through a 0600 file that is removed at once."""
    ctx = context if context is not None else ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(prefix="stratus-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_text(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as exc:
            raise EndpointTlsInvalid(f"the tls certfile and keyfile do not make a TLS server: {exc}") from exc
    return ctx


async def store_endpoint_tls(
    conn: asyncpg.Connection, service: str, version: int, cert_pem: str, key_pem: str, home: Path
) -> None:
    """Keep the pair for ``service`` (the key encrypted by its data key). Call inside the
    transaction that appends the event of ``version``; ``ensure_endpoint_schema`` first."""
    check_tls_pair(cert_pem, key_pem)
    fernet = await service_data_key(conn, service, home)
    try:
        await conn.execute(
            "INSERT INTO stratus_endpoint_tls (service, version, cert_pem, key_encrypted) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (service) DO UPDATE "
            "SET version = $2, cert_pem = $3, key_encrypted = $4, updated_at = now()",
            service, version, cert_pem, fernet.encrypt(key_pem.encode()),
        )  # fmt: skip
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error(f"store the tls key of service {service!r}", exc) from exc


async def load_endpoint_tls(conn: Conn, service: str, home: Path) -> EndpointTls | None:
    """The service's certificate and decrypted key, or None when it sent none."""
    try:
        row = await conn.fetchrow(
            "SELECT t.version, t.cert_pem, t.key_encrypted, k.key_encrypted AS data_key "
            "FROM stratus_endpoint_tls t LEFT JOIN stratus_secret_keys k USING (service) "
            "WHERE t.service = $1",
            service,
        )
    except asyncpg.UndefinedTableError:
        return None
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error(f"read the tls key of service {service!r}", exc) from exc
    if row is None:
        return None
    if row["data_key"] is None:
        raise SecretUnreadable(f"the tls key of service {service!r} was purged with its data key")
    fernet = _unwrap(master_keyring(home), bytes(row["data_key"]), service, home)
    try:
        key_pem = fernet.decrypt(bytes(row["key_encrypted"])).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(f"cannot decrypt the tls key of service {service!r}") from exc
    return EndpointTls(int(row["version"]), str(row["cert_pem"]), key_pem)


# --------------------------------------------------------------------------- lifecycle


async def reset_endpoint(conn: asyncpg.Connection, service: str) -> None:
    """Forget the keys and certificate of an earlier service of this name (at create)."""
    await purge_endpoint(conn, service)


async def purge_endpoint(conn: asyncpg.Connection, service: str) -> None:
    """Delete the service's endpoint keys and tls pair (in the transaction of the purge)."""
    try:
        await conn.execute("DELETE FROM stratus_endpoint_keys WHERE service = $1", service)
        await conn.execute("DELETE FROM stratus_endpoint_tls WHERE service = $1", service)
    except (OSError, asyncpg.PostgresError) as exc:
        raise _store_error(f"delete the endpoint secrets of service {service!r}", exc) from exc
