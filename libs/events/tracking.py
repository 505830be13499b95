"""Tracking reduced to what de-duplication needs: a floor per consumer, and rows above it.

A tracked consumer inserts ``(consumer, position)`` in the handler's transaction; a redelivered
message finds the row and is only acked. Keeping only the last position per consumer would not
do: JetStream redelivers a nak'ed message after later ones were handled (concurrency, backoff),
so "position <= last" would drop it unhandled. What can go is everything below the lowest
position the consumer may still receive unhandled. That is the floor:

    floor' = (the lowest position above the floor of an event of the consumer's types that has
              neither a tracking row nor a dead letter of this consumer) - 1
             or, when there is none, the highest tracked position

Every position at or below the floor counts as handled (``Transaction.track`` checks it), and
the rows at or below it are deleted. A position without a committed row holds the floor below
it (a handler still in flight, an event not relayed yet), so nothing undelivered is skipped. A
new consumer starts its floor at the position its service's projection started from (it is
created to deliver from there: ``ConsumerOptions.start_time``); so does one re-created after
JetStream expired or lost it (its service's handlers are level-triggered and resynced from the
projection, which reads Postgres, so what the old consumer had not delivered is not lost).

A dead-lettered position does not hold the floor, but it stays trackable below it and its
tracking row is kept: a retried dead letter (libs/events/redelivery.py) is handled once.

``prune`` and ``Transaction.track`` serialize on the floor row (FOR UPDATE / FOR SHARE), so the
row must exist before a position is tracked: a track that finds none inserts it (floor 0) in its
own transaction first. That insert holds back a concurrent ``prune`` (whose own insert of the row
waits on it) until the handler commits; a track that saw no row and locked nothing could otherwise
race a prune that deletes the row it is about to find missing, and handle a position twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from .errors import StoreUnavailable

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

_TRACK = """
WITH f AS (SELECT position FROM stratus_tracking_floor WHERE consumer = $1 FOR SHARE),
ins AS (
  INSERT INTO stratus_tracking (consumer, position)
  SELECT $1, $2 FROM f WHERE $2 > f.position OR EXISTS (SELECT 1 FROM stratus_dead_letters d
    WHERE d.consumer = $1 AND d.position = $2)
  ON CONFLICT DO NOTHING RETURNING 1)
SELECT EXISTS (SELECT 1 FROM f), EXISTS (SELECT 1 FROM ins)
"""

_GAP = """
SELECT min(e.position) FROM stratus_events e
WHERE e.position > $2 AND e.position <= $4 AND e.event_type = ANY($3::text[])
  AND NOT EXISTS (SELECT 1 FROM stratus_tracking t WHERE t.consumer = $1 AND t.position = e.position)
  AND NOT EXISTS (SELECT 1 FROM stratus_dead_letters d WHERE d.consumer = $1 AND d.position = e.position)
"""


async def track_on(conn: asyncpg.Connection, consumer: str, position: int) -> bool:
    """Record, in ``conn``'s open transaction, that ``consumer`` handled ``position``; False if it
    already had (a tracking row, or a position at or below the floor)."""
    row = await conn.fetchrow(_TRACK, consumer, position)
    if row is not None and row[0]:
        return bool(row[1])
    # No floor row yet: create it in this transaction (a concurrent prune or first track waits on
    # it), then track again under a fresh statement snapshot that sees the row and locks it.
    await conn.execute(
        "INSERT INTO stratus_tracking_floor (consumer, position) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        consumer,
    )
    row = await conn.fetchrow(_TRACK, consumer, position)
    return row is not None and bool(row[1])


async def init_floor(pool: asyncpg.Pool, consumer: str, position: int) -> bool:
    """Raise ``consumer``'s floor to ``position`` (creating it): for a JetStream consumer being
    created to deliver from ``position`` on. True if the floor moved."""
    try:
        row = await pool.fetchval(
            "INSERT INTO stratus_tracking_floor (consumer, position) VALUES ($1, $2)"
            " ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"
            " WHERE stratus_tracking_floor.position < EXCLUDED.position RETURNING 1",
            consumer,
            position,
        )
    except _DB_ERRORS as exc:
        raise StoreUnavailable(f"cannot set the tracking floor of {consumer!r}: {exc!r}") from exc
    return row is not None


async def floor(pool: asyncpg.Pool, consumer: str) -> int:
    v = await pool.fetchval("SELECT position FROM stratus_tracking_floor WHERE consumer = $1", consumer)
    return int(v or 0)


async def prune(pool: asyncpg.Pool, consumer: str, types: Sequence[str]) -> tuple[int, int]:
    """Raise ``consumer``'s floor as far as it safely goes and delete the rows below it.

    ``types``: the event types the consumer receives. Returns (floor, rows deleted).
    """
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO stratus_tracking_floor (consumer, position) VALUES ($1, 0)"
                " ON CONFLICT DO NOTHING",
                consumer,
            )
            current = int(
                await conn.fetchval(
                    "SELECT position FROM stratus_tracking_floor WHERE consumer = $1 FOR UPDATE",
                    consumer,
                )
            )
            top = await conn.fetchval(
                "SELECT max(position) FROM stratus_tracking WHERE consumer = $1", consumer
            )
            if top is None or top <= current:
                return current, 0
            gap = await conn.fetchval(_GAP, consumer, current, list(types), top)
            new = int(top) if gap is None else int(gap) - 1
            if new <= current:
                return current, 0
            status = await conn.execute(
                "DELETE FROM stratus_tracking t WHERE t.consumer = $1 AND t.position <= $2 AND NOT EXISTS"
                " (SELECT 1 FROM stratus_dead_letters d WHERE d.consumer = $1 AND d.position = t.position)",
                consumer,
                new,
            )
            await conn.execute(
                "UPDATE stratus_tracking_floor SET position = $2, updated_at = now() WHERE consumer = $1",
                consumer,
                new,
            )
    except _DB_ERRORS as exc:
        raise StoreUnavailable(f"cannot prune the tracking rows of {consumer!r}: {exc!r}") from exc
    return new, int(status.split()[-1])
