"""Proposals measured by the benchmark, not shipped: each is installed or used only inside the
benchmark's own database or pool, next to what ships, so the run shows what adopting it would buy.

- ``PROPOSED_APPEND_SQL``: a migration that would replace ``stratus_append``
  (libs/events/schema.py, migration 2) with the same contract (lock first, positions in commit
  order, expected version checked on a stream's first entry, SE001 on conflict, one NOTIFY).
  Batches over 16 rows go set-based: one index probe per distinct stream and one
  INSERT .. SELECT for all rows. The shipped loop keeps a jsonb map of versions and rewrites it
  (jsonb_set) twice per row, so a batch costs O(rows x distinct streams); small batches, where
  the loop is cheaper than the set-based plan, are handed to the shipped function itself, so
  none of its SQL is copied here. The advisory lock key is read from the shipped migration.
- ``keep_session``: a pool ``reset`` that skips asyncpg's reset query.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from libs.events.schema import MIGRATIONS


def _append_lock_key() -> int:
    """The advisory lock key that the shipped ``stratus_append`` serializes appends with."""
    found = re.search(r"pg_advisory_xact_lock\((\d+)\)", MIGRATIONS[1])
    if found is None:
        raise RuntimeError("stratus_append (libs/events/schema.py, migration 2) takes no advisory lock")
    return int(found.group(1))


PROPOSED_APPEND_SQL = r"""
CREATE FUNCTION bench_stratus_append_set(
    p_streams text[], p_expected integer[], p_ids uuid[], p_types text[],
    p_schemas integer[], p_payloads jsonb[], p_causations uuid[], p_correlations uuid[],
    p_traces jsonb[], p_now timestamptz
) RETURNS TABLE (out_position bigint, out_version integer)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_ids, 1), 0);
    base bigint;
    cs text[];
    cv integer[];
    bad record;
BEGIN
    IF n = 0 THEN RETURN; END IF;
    IF n <= 16 THEN
        -- Small batches (single-event appends): the shipped loop costs less than the set-based
        -- plan, so they go to it unchanged (it takes the same lock).
        RETURN QUERY SELECT * FROM stratus_append(p_streams, p_expected, p_ids, p_types, p_schemas,
            p_payloads, p_causations, p_correlations, p_traces, p_now);
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(__APPEND_LOCK__);
    -- Larger batches: one index probe per distinct stream, one INSERT .. SELECT for all rows.
    SELECT array_agg(d.s),
           array_agg((SELECT coalesce(max(e.version), 0) FROM stratus_events e WHERE e.stream_id = d.s))
      INTO cs, cv FROM (SELECT DISTINCT unnest(p_streams) AS s) d;
    SELECT f.s, f.x, c.cur INTO bad
      FROM (SELECT DISTINCT ON (u.s) u.s, u.x FROM unnest(p_streams, p_expected) WITH ORDINALITY
            AS u(s, x, ord) ORDER BY u.s, u.ord) f
      JOIN unnest(cs, cv) AS c(s, cur) ON c.s = f.s
     WHERE f.x IS NOT NULL AND f.x <> c.cur LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'SE001', MESSAGE = 'concurrency conflict',
            DETAIL = json_build_object('stream', bad.s, 'expected', bad.x, 'actual', bad.cur)::text;
    END IF;
    -- n positions drawn as one block under the lock (every writer of the sequence holds it).
    base := nextval('stratus_events_position_seq');
    PERFORM setval('stratus_events_position_seq', base + n - 1);
    RETURN QUERY
    WITH ins AS (
        INSERT INTO stratus_events (position, event_id, stream_id, version, event_type,
            schema_version, payload, occurred_at, causation_id, correlation_id, trace)
        SELECT base + u.ord - 1, u.id, u.s,
               (c.cur + row_number() OVER (PARTITION BY u.s ORDER BY u.ord))::integer,
               u.t, u.sv, u.p, p_now, u.ca, u.co, coalesce(u.tr, '{}')
          FROM unnest(p_streams, p_ids, p_types, p_schemas, p_payloads, p_causations,
                      p_correlations, p_traces) WITH ORDINALITY AS u(s, id, t, sv, p, ca, co, tr, ord)
          JOIN unnest(cs, cv) AS c(s, cur) ON c.s = u.s
        RETURNING position, version)
    SELECT ins.position, ins.version FROM ins ORDER BY ins.position;
    PERFORM pg_notify('stratus_events', (base + n - 1)::text);
END $$;
""".replace("__APPEND_LOCK__", str(_append_lock_key()))


class ProposedAppendConn:
    """A connection whose ``append_on`` calls go to the proposed function (same arguments)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, query: str, *args: Any) -> Any:
        return await self.conn.fetch(query.replace("stratus_append(", "bench_stratus_append_set("), *args)


async def keep_session(conn: asyncpg.Connection) -> None:
    """Proposal for EventStore.connect: ``create_pool(..., reset=keep_session)``.

    asyncpg still rolls back an open transaction and drops client-side listeners on release;
    what is skipped is the reset query (``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL``), one more round trip per acquire. The store's pooled connections
    keep no session state: LISTEN and the relay's session lock use dedicated connections.
    """
