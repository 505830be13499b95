"""Audit checkpoints: a projection's state at past positions, so that replaying "the state as of
position P (or time T)" folds only the events since the nearest checkpoint before it.

Checkpoints are written as a side effect of replays (every ``every`` positions folded past the
last one) and by the API from its live projection (``checkpoint_live``), one row per
(projection, code fingerprint, position): like snapshots, a state built
by other code is never loaded. A checkpoint serves a time ``T`` only if every event up to its
position occurred at or before ``T`` (``max_occurred_at``): then "the events that occurred by
T" are exactly its events plus those after it that occurred by T.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

import asyncpg

from .outcomes import TRANSIENT_ERRORS
from .projection import Projection
from .store import EventStore

S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS stratus_replay_checkpoints (
    name             text NOT NULL,
    fingerprint      text NOT NULL,
    position         bigint NOT NULL,
    max_occurred_at  timestamptz NOT NULL,
    state            bytea NOT NULL,
    PRIMARY KEY (name, fingerprint, position)
);
"""
_LOCK_KEY = 0x53545244_43504B  # serializes the table's creation


async def ensure_schema(pool: asyncpg.Pool) -> None:
    if await pool.fetchval("SELECT to_regclass('stratus_replay_checkpoints') IS NOT NULL"):
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(SCHEMA)


@dataclass(frozen=True, slots=True)
class Replayed(Generic[S]):
    state: S
    from_checkpoint: int  # the checkpoint's position the fold started from (0: the start)
    folded: int  # rows read after it


async def replay(
    projection: Projection[S], store: EventStore, *, position: int | None = None,
    time: datetime | None = None, batch_size: int = 10_000, every: int = 10_000,
) -> Replayed[S]:  # fmt: skip
    """``projection.as_of(position=|time=)``, started from the nearest usable checkpoint; when
    folding by position, it leaves checkpoints behind every ``every`` positions."""
    if (position is None) == (time is None):
        raise ValueError("replay needs exactly one of position= or time=")
    codec = projection.snapshots
    if codec is None:  # nothing to store states with: the plain fold
        state = await projection.as_of(store, position=position, time=time, batch_size=batch_size)
        return Replayed(state, 0, -1)
    pool = store.pool
    await ensure_schema(pool)
    row = await pool.fetchrow(
        "SELECT position, state, max_occurred_at FROM stratus_replay_checkpoints"
        " WHERE name = $1 AND fingerprint = $2"
        " AND ($3::bigint IS NULL OR position <= $3) AND ($4::timestamptz IS NULL OR max_occurred_at <= $4)"
        " ORDER BY position DESC LIMIT 1",
        codec.name, codec.fingerprint, position, time,
    )  # fmt: skip
    state = codec.decode(bytes(row[1])) if row is not None else projection.initial()
    start = cursor = row[0] if row is not None else 0
    last_checkpoint = start
    # Events of types the projection does not fold cannot change its state: only those it
    # folds count towards a checkpoint's max_occurred_at.
    max_seen: datetime | None = row[2] if row is not None else None
    types = sorted(projection.types) if projection.types is not None else None
    folded = 0
    while True:
        page = await store.read_page(
            after=cursor, limit=batch_size, until=position, before_time=time, types=types
        )
        state = projection.fold(state, page.records)
        for rec in page.records:
            if max_seen is None or rec.occurred_at > max_seen:
                max_seen = rec.occurred_at
        folded += page.rows
        cursor = page.last_position
        if time is None and max_seen is not None and cursor - last_checkpoint >= every:
            await _save(pool, codec.name, codec.fingerprint, cursor, max_seen, codec.encode(state))
            last_checkpoint = cursor
        if page.rows < batch_size:
            return Replayed(state, start, folded)


async def _save(
    pool: asyncpg.Pool, name: str, fingerprint: str, position: int, max_occurred: datetime, state: bytes
) -> None:
    await pool.execute(
        "INSERT INTO stratus_replay_checkpoints (name, fingerprint, position, max_occurred_at, state)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        name, fingerprint, position, max_occurred, state,
    )  # fmt: skip


class _Live(Protocol[S_co]):
    @property
    def state(self) -> S_co: ...

    @property
    def position(self) -> int: ...


async def checkpoint_live(
    projection: Projection[S], live: _Live[S], store: EventStore, stop: asyncio.Event, *,
    every: int = 10_000, interval: float = 5.0,
) -> None:  # fmt: skip
    """Leave a checkpoint of a live projection's state each time it has moved ``every`` positions
    past the last one, so that even the first audit replay starts near the moment it asks for.
    (A live projection's state at position P is the fold of the events up to P.)"""
    codec = projection.snapshots
    if codec is None:
        return
    await ensure_schema(store.pool)
    last = await store.pool.fetchval(
        "SELECT coalesce(max(position), 0) FROM stratus_replay_checkpoints"
        " WHERE name = $1 AND fingerprint = $2",
        codec.name, codec.fingerprint,
    )  # fmt: skip
    types = sorted(projection.types) if projection.types is not None else None
    while not stop.is_set():
        state, position = live.state, live.position
        if position - last >= every:
            try:
                max_occurred = await store.pool.fetchval(
                    "SELECT max(occurred_at) FROM stratus_events WHERE position <= $1"
                    " AND ($2::text[] IS NULL OR event_type = ANY($2::text[]))",
                    position, types,
                )  # fmt: skip
                if max_occurred is not None:
                    await _save(store.pool, codec.name, codec.fingerprint, position, max_occurred,
                                codec.encode(state))  # fmt: skip
                last = position
            except TRANSIENT_ERRORS as exc:
                log.warning("replay checkpoint at %d: %r; later", position, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
