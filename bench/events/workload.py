"""What is appended: the synthetic fleet mix (bench/fleet/synthetic.py) as events, cut into
per-stream runs, and the baseline that appends the same rows with plain INSERTs."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from bench.fleet.synthetic import synthetic
from libs.events.store import StreamAppend
from libs.events.types import Event, event_tag, replica_stream, service_stream

_encoder = msgspec.json.Encoder()


def stream_of(e: Event) -> str:
    rid = getattr(e, "replica_id", None)
    return replica_stream(e.service, rid) if isinstance(rid, int) else service_stream(e.service)


def fleet_events(n: int) -> list[Event]:
    """``n`` events of the synthetic fleet mix (bench/fleet/synthetic.py), in log order."""
    records = synthetic(n)
    events = [r.event for r in records]
    del records
    gc.collect()
    return events


def as_batches(events: Sequence[Event]) -> list[StreamAppend]:
    """Consecutive runs of one stream, log order kept (one transaction for all of them)."""
    out: list[StreamAppend] = []
    run: list[Event] = []
    current = ""
    for e in events:
        s = stream_of(e)
        if s != current and run:
            out.append(StreamAppend(current, run))
            run = []
        current = s
        run.append(e)
    if run:
        out.append(StreamAppend(current, run))
    return out


class Cycle:
    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.i = 0

    def take(self, n: int) -> list[Event]:
        out: list[Event] = []
        while len(out) < n:
            chunk = self.events[self.i : self.i + n - len(out)]
            out.extend(chunk)
            self.i = (self.i + len(chunk)) % len(self.events)
        return out


# --------------------------------------------------------------------------- baseline: plain inserts

_PLAIN_COLS = (
    "position, event_id, stream_id, version, event_type, schema_version, payload, occurred_at,"
    " causation_id, correlation_id, trace"
)
PLAIN_ONE = (
    f"INSERT INTO bench_plain ({_PLAIN_COLS}) VALUES"
    " (nextval('bench_plain_seq'), $1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::jsonb)"
)
_PLAIN_MANY = (
    f"INSERT INTO bench_plain ({_PLAIN_COLS})"
    " SELECT nextval('bench_plain_seq'), u.id, u.s, u.v, u.t, u.sv, u.p, $7, u.c, u.r, u.tr"
    " FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::int[], $6::jsonb[],"
    " $8::uuid[], $9::uuid[], $10::jsonb[]) AS u(id, s, v, t, sv, p, c, r, tr)"
)


class Plain:
    """Raw asyncpg INSERTs of the same rows: same table shape, no function, no lock."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.versions: dict[str, int] = {}

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(
                "CREATE TABLE bench_plain (LIKE stratus_events INCLUDING ALL);"
                " CREATE SEQUENCE bench_plain_seq AS bigint;"
            )

    def _row(self, e: Event) -> tuple[Any, ...]:
        s = stream_of(e)
        v = self.versions[s] = self.versions.get(s, 0) + 1
        return (uuid.uuid4(), s, v, event_tag(e), 1, _encoder.encode(e).decode(), None, None, "{}")

    async def one(self, e: Event) -> None:
        r = self._row(e)
        now = datetime.now(UTC)
        await self.pool.execute(PLAIN_ONE, r[0], r[1], r[2], r[3], r[4], r[5], now, r[6], r[7], r[8])

    async def many(self, events: Sequence[Event]) -> None:
        rows = [self._row(e) for e in events]
        cols = list(zip(*rows, strict=True))
        await self.pool.execute(
            _PLAIN_MANY, list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4]),
            list(cols[5]), datetime.now(UTC), list(cols[6]), list(cols[7]), list(cols[8]),
        )  # fmt: skip
