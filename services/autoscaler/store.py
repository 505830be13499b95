"""The autoscaler's reads of the log and its lock (asyncpg), in the deciding transaction.

The autoscaler keeps no table of its own: its state is the ``AUTOSCALER`` projection of the log
(``fold.py``; snapshotted like the fleet's), plus the last window of ``QpsSampled`` read here.
The pre-log table ``stratus_autoscaler_state`` is carried into the log and dropped by migration
10 (libs/events/schema.py).
"""

from __future__ import annotations

import asyncpg

from libs.events.codec import decode
from libs.events.errors import TransientError
from libs.events.types import QpsSampled, service_stream

# Advisory lock namespace of a service's decision (namespaced like libs.events.schema's).
DECISION_LOCK = 0x5354_0021

# A sample is read if it was recorded within this much more than a window before now: it is
# appended once its window has ended, so this covers an appender's lag and clock skew.
SAMPLE_SLACK_SECONDS = 60.0
PAGE = 256  # rows of the stream read at once, newest first
MAX_PAGES = 64  # a bound: more samples than this in a window would be a flood


async def lock_service(conn: asyncpg.Connection, service: str, *, hold: float) -> int:
    """Take ``service``'s decision lock for this transaction (one deciding instance at a time);
    returns the log's head, which the caller's projections must reach before deciding.

    An instance paused or cut off while it holds the lock loses it (and its transaction, so its
    decision is never recorded) once the transaction has been idle for ``hold`` seconds: Postgres
    ends the session. Another waits for the lock that long at most, plus a margin."""
    try:
        await conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {int(hold * 1000)}")
        await conn.execute(f"SET LOCAL lock_timeout = {int(hold * 2000)}")
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext($2))", DECISION_LOCK, service)
    except asyncpg.LockNotAvailableError as exc:
        raise TransientError(f"{service}: another autoscaler holds its decision lock; retry later") from exc
    return int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM stratus_events"))


async def recent_samples(conn: asyncpg.Connection, service: str, window_seconds: float) -> list[QpsSampled]:
    """The service's QpsSampled recorded in the last window (plus slack), in log order.

    Read backwards through the service's stream by its (stream, version) key, a page at a time,
    until a row older than that: the cost is the stream's last minutes, never its history."""
    horizon = await conn.fetchval(
        "SELECT now() - make_interval(secs => $1)", window_seconds + SAMPLE_SLACK_SECONDS
    )
    stream = service_stream(service)
    found: list[QpsSampled] = []
    below = 2**31 - 1
    for _ in range(MAX_PAGES):
        rows = await conn.fetch(
            "SELECT version, event_type, schema_version, payload::text, occurred_at FROM stratus_events"
            " WHERE stream_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3",
            stream, below, PAGE,
        )  # fmt: skip
        for version, event_type, schema, payload, occurred_at in rows:
            if occurred_at <= horizon:
                return found[::-1]
            if event_type == QpsSampled.__name__:
                sample = decode(event_type, schema, payload)
                if isinstance(sample, QpsSampled):
                    found.append(sample)
            below = version
        if len(rows) < PAGE:
            break
    return found[::-1]
