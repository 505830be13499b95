"""Filling a fresh database with N events of the synthetic fleet mix, fast (COPY, not appends)."""

from __future__ import annotations

import gc
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from bench.events.workload import stream_of
from bench.fleet.synthetic import synthetic
from libs.events.schema import migrate
from libs.events.types import event_tag
from libs.events.upcasting import current_schema

_COLUMNS = [
    "position", "event_id", "stream_id", "version", "event_type", "schema_version", "payload",
    "occurred_at", "trace",
]  # fmt: skip
_encoder = msgspec.json.Encoder()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def load(dsn: str, n: int, *, services: int = 50, first: int = 1) -> Counter[str]:
    """Append ``n`` events (positions from ``first``) with COPY; returns the count per type."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        versions: dict[str, int] = {
            r[0]: r[1]
            for r in await conn.fetch("SELECT stream_id, max(version) FROM stratus_events GROUP BY 1")
        }
        kinds: Counter[str] = Counter()
        chunk = 100_000
        done = 0
        records = synthetic(n, services=services)
        while done < n:
            size = min(chunk, n - done)
            rows = []
            for i, rec in enumerate(records[done : done + size]):
                e = rec.event
                s = stream_of(e)
                v = versions[s] = versions.get(s, 0) + 1
                tag = event_tag(e)
                kinds[tag] += 1
                position = first + done + i
                rows.append((
                    position, uuid.uuid4(), s, v, tag, current_schema(tag), _encoder.encode(e).decode(),
                    T0 + timedelta(milliseconds=position), json.dumps({}),
                ))  # fmt: skip
            await conn.copy_records_to_table("stratus_events", records=rows, columns=_COLUMNS)
            done += size
            del rows
        del records
        gc.collect()
        await conn.execute("SELECT setval('stratus_events_position_seq', $1)", first + n - 1)
        await conn.execute("ANALYZE stratus_events")
        return kinds
    finally:
        await conn.close()
