"""The event store's schema, created or migrated on start.

Migrations are an ordered list; each runs once, in its own transaction, under an advisory lock
so several processes starting together do not race. Applied versions are recorded.
"""

from __future__ import annotations

import asyncpg

# Advisory lock keys (arbitrary constants, namespaced by the first number). Appends take
# 0x5354_0002 (1398013954), written as a literal in ``stratus_append`` (migration 2).
MIGRATION_LOCK = 0x5354_0001

NOTIFY_CHANNEL = "stratus_events"

MIGRATIONS: list[str] = [
    # 1: the log, tracking, dead letters, relay offsets.
    """
    CREATE TABLE stratus_events (
        position        bigint PRIMARY KEY,
        event_id        uuid NOT NULL UNIQUE,
        stream_id       text NOT NULL,
        version         integer NOT NULL,
        event_type      text NOT NULL,
        schema_version  integer NOT NULL DEFAULT 1,
        payload         jsonb NOT NULL,
        occurred_at     timestamptz NOT NULL,
        causation_id    uuid,
        correlation_id  uuid,
        trace           jsonb NOT NULL DEFAULT '{}',
        UNIQUE (stream_id, version)
    );
    CREATE SEQUENCE stratus_events_position_seq AS bigint;
    CREATE INDEX stratus_events_type_idx ON stratus_events (event_type, position);
    CREATE INDEX stratus_events_time_idx ON stratus_events (occurred_at);

    -- Refuse updates and deletes: the log is append-only.
    CREATE FUNCTION stratus_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'stratus_events is append-only (% refused)', TG_OP;
    END $$;
    CREATE TRIGGER stratus_events_no_update BEFORE UPDATE OR DELETE ON stratus_events
        FOR EACH ROW EXECUTE FUNCTION stratus_events_immutable();

    CREATE TABLE stratus_tracking (
        consumer    text NOT NULL,
        position    bigint NOT NULL,
        handled_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer, position)
    );

    CREATE TABLE stratus_dead_letters (
        id            bigserial PRIMARY KEY,
        consumer      text NOT NULL,
        position      bigint,
        event_id      text,
        subject       text NOT NULL DEFAULT '',
        reason        text NOT NULL,
        payload       bytea,
        deliveries    integer NOT NULL DEFAULT 1,
        recorded_at   timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE stratus_relay_offsets (
        relay       text PRIMARY KEY,
        position    bigint NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 2: one-round-trip append. Appends are serialized by a transaction-scoped advisory lock
    # taken before positions are drawn, so positions are handed out in commit order and a
    # tailing reader can never see position N+1 while N is still in flight (the sequence-gap
    # bug). The lock is held only from the append to the commit.
    """
    CREATE FUNCTION stratus_append(
        p_streams text[], p_expected integer[], p_ids uuid[], p_types text[],
        p_schemas integer[], p_payloads jsonb[], p_causations uuid[], p_correlations uuid[],
        p_traces jsonb[], p_now timestamptz
    ) RETURNS TABLE (out_position bigint, out_version integer)
    LANGUAGE plpgsql AS $$
    DECLARE
        s text;
        i integer;
        cur integer;
        expected integer;
        versions jsonb := '{}';
        n integer := coalesce(array_length(p_ids, 1), 0);
        pos bigint;
        ver integer;
    BEGIN
        PERFORM pg_advisory_xact_lock(1398013954);
        FOR i IN 1..n LOOP
            s := p_streams[i];
            IF NOT versions ? s THEN
                SELECT coalesce(max(version), 0) INTO cur FROM stratus_events WHERE stream_id = s;
                expected := p_expected[i];
                IF expected IS NOT NULL AND expected <> cur THEN
                    RAISE EXCEPTION USING
                        ERRCODE = 'SE001',
                        MESSAGE = 'concurrency conflict',
                        DETAIL = json_build_object('stream', s, 'expected', expected, 'actual', cur)::text;
                END IF;
                versions := jsonb_set(versions, ARRAY[s], to_jsonb(cur));
            END IF;
            ver := (versions ->> s)::integer + 1;
            versions := jsonb_set(versions, ARRAY[s], to_jsonb(ver));
            pos := nextval('stratus_events_position_seq');
            INSERT INTO stratus_events (position, event_id, stream_id, version, event_type,
                schema_version, payload, occurred_at, causation_id, correlation_id, trace)
            VALUES (pos, p_ids[i], s, ver, p_types[i], p_schemas[i], p_payloads[i], p_now,
                p_causations[i], p_correlations[i], coalesce(p_traces[i], '{}'));
            out_position := pos;
            out_version := ver;
            RETURN NEXT;
        END LOOP;
        IF n > 0 THEN
            PERFORM pg_notify('stratus_events', pos::text);
        END IF;
    END $$;
    """,
]


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply pending migrations; returns the schema version now in place."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS stratus_schema_migrations ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = await conn.fetchval("SELECT coalesce(max(version), 0) FROM stratus_schema_migrations")
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= applied:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO stratus_schema_migrations (version) VALUES ($1)", version)
        return len(MIGRATIONS)
