"""Projection snapshots in Postgres: a projection's state and position, so a process starts from
the last snapshot and replays only the tail of the log (start-up in constant time).

One row per (projection name, code fingerprint): every instance of every service folds the same
log with the same code into the same state, so they share the row; a write only replaces an
older position (``GREATEST`` semantics, like the relay's offset). The fingerprint changes with
the code that folds (libs/fleet/projection.py hashes its sources), so a new version never loads
a state built by old code: it rebuilds once and writes its own row; rows of other fingerprints
untouched for a day are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg

from .errors import StoreUnavailable

S = TypeVar("S")

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True, slots=True)
class SnapshotCodec(Generic[S]):
    """How a projection's state is stored: ``name`` and ``fingerprint`` key the row."""

    name: str
    fingerprint: str
    encode: Callable[[S], bytes]
    decode: Callable[[bytes], S]


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    position: int
    skipped: int
    state: bytes


async def load_snapshot(pool: asyncpg.Pool, name: str, fingerprint: str) -> StoredSnapshot | None:
    try:
        row = await pool.fetchrow(
            "SELECT position, skipped, state FROM stratus_projection_snapshots"
            " WHERE name = $1 AND fingerprint = $2",
            name,
            fingerprint,
        )
    except _DB_ERRORS as exc:
        raise StoreUnavailable(f"cannot read the {name!r} snapshot: {exc!r}") from exc
    return StoredSnapshot(row[0], row[1], bytes(row[2])) if row is not None else None


async def save_snapshot(
    pool: asyncpg.Pool, name: str, fingerprint: str, position: int, skipped: int, state: bytes
) -> bool:
    """Write a snapshot unless one at the same or a later position is there; True if written."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            written = await conn.fetchval(
                "INSERT INTO stratus_projection_snapshots (name, fingerprint, position, skipped, state)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, fingerprint) DO UPDATE SET"
                " position = EXCLUDED.position, skipped = EXCLUDED.skipped, state = EXCLUDED.state,"
                " written_at = now() WHERE stratus_projection_snapshots.position < EXCLUDED.position"
                " RETURNING 1",
                name, fingerprint, position, skipped, state,
            )  # fmt: skip
            await conn.execute(
                "DELETE FROM stratus_projection_snapshots WHERE name = $1 AND fingerprint <> $2"
                " AND written_at < now() - interval '1 day'",
                name,
                fingerprint,
            )
    except _DB_ERRORS as exc:
        raise StoreUnavailable(f"cannot write the {name!r} snapshot: {exc!r}") from exc
    return written is not None
