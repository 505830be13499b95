"""The database schema of Stratus, created or migrated on start: one ordered list.

Migrations are an ordered list; each runs once, in the same transaction as the record of it,
under an advisory lock so several processes starting together do not race. Applied versions are
recorded in ``stratus_schema_migrations``. A new table or column anywhere in Stratus is a new
entry at the end (never an edit of an applied one).

The list holds every table: the log (1, 2), projection snapshots, the tracking floor and leases
(3), the tables of libs.secrets, libs.auth, libs.bootstrap and the autoscaler (4-8), and the
dead-letter retry requests of redelivery.py (9); the autoscaler's table is carried into the log
and dropped (10: its state is a fold of the log now). The other
packages still run their own ``CREATE TABLE IF NOT EXISTS`` (the same text, so either order is
fine; tests/events/test_schema.py checks the texts are equal), which makes their code usable on a
database this list has not migrated yet.
"""

from __future__ import annotations

from typing import Any

import asyncpg

# Advisory lock keys (arbitrary constants, namespaced by the first number). Appends take
# 0x5354_0002 (1398013954), written as a literal in ``stratus_append`` (migration 2).
MIGRATION_LOCK = 0x5354_0001

NOTIFY_CHANNEL = "stratus_events"

async def apply_ddl(db: Any, lock_key: int, ddl: str) -> None:
    """Run one package's ``CREATE ... IF NOT EXISTS`` text under a transaction-scoped advisory
    lock, so processes starting together don't race. ``db`` is an asyncpg pool or connection;
    asyncpg and OS errors propagate for the owner to translate into its own tree."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            await apply_ddl(conn, lock_key, ddl)
        return
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
        await db.execute(ddl)


# Other packages' tables: the one text of each, run here in order and by their owners.

# libs.secrets (store.py): secret values and per-service data keys.
SECRETS_DDL = """
CREATE TABLE IF NOT EXISTS stratus_secrets (
    service          text NOT NULL,
    version          integer NOT NULL,
    name             text NOT NULL,
    value_encrypted  bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, version, name)
);
CREATE TABLE IF NOT EXISTS stratus_secret_keys (
    service          text PRIMARY KEY,
    key_encrypted    bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
)
"""


# libs.secrets (endpoint.py): endpoint TLS pairs and API keys.
ENDPOINT_SECRETS_DDL = """
CREATE TABLE IF NOT EXISTS stratus_endpoint_tls (
    service        text PRIMARY KEY,
    version        integer NOT NULL,
    cert_pem       text NOT NULL,
    key_encrypted  bytea NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS stratus_endpoint_keys (
    service     text NOT NULL,
    key_id      text NOT NULL,
    name        text NOT NULL,
    key_hash    bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (service, key_id)
)
"""


# libs.auth (store.py): API tokens.
API_TOKENS_DDL = """
CREATE TABLE IF NOT EXISTS stratus_api_tokens (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'viewer')),
    token_sha256  text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL DEFAULT '',
    revoked_at    timestamptz,
    revoked_by    text NOT NULL DEFAULT ''
)
"""


# libs.bootstrap (tokens.py): one-time bootstrap tokens.
BOOTSTRAP_DDL = """
CREATE TABLE IF NOT EXISTS stratus_bootstrap_tokens (
    token_sha256         text PRIMARY KEY,
    service              text NOT NULL,
    replica_id           integer NOT NULL,
    version              integer NOT NULL,
    log_token_encrypted  bytea NOT NULL,
    issued_at            double precision NOT NULL,
    expires_at           double precision NOT NULL,
    used_at              double precision
);
CREATE INDEX IF NOT EXISTS stratus_bootstrap_tokens_replica
    ON stratus_bootstrap_tokens (service, replica_id, issued_at)
"""
# Who redeemed a token (sha256 of the instance's random request id) and how often it fetched its
# answer again after losing it (libs.bootstrap.tokens: a lost answer is retried, bounded).
BOOTSTRAP_REPLAY_DDL = """
ALTER TABLE stratus_bootstrap_tokens ADD COLUMN IF NOT EXISTS redeemed_by text;
ALTER TABLE stratus_bootstrap_tokens ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0
"""
# A multi-node replica's tokens: one per node, with its rank, and every node's private IP (JSON
# list, head first) once the provisioner has them (libs.bootstrap.tokens.set_node_ips).
BOOTSTRAP_NODES_DDL = """
ALTER TABLE stratus_bootstrap_tokens ADD COLUMN IF NOT EXISTS node_rank integer NOT NULL DEFAULT 0;
ALTER TABLE stratus_bootstrap_tokens ADD COLUMN IF NOT EXISTS num_nodes integer NOT NULL DEFAULT 1;
ALTER TABLE stratus_bootstrap_tokens ADD COLUMN IF NOT EXISTS node_ips text
"""


# the autoscaler's pre-log table (one mutable row per service), dropped by AUTOSCALER_TO_LOG.
AUTOSCALER_DDL = """
CREATE TABLE IF NOT EXISTS stratus_autoscaler_state (
    service     text PRIMARY KEY,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
)
"""


# The autoscaler's state becomes a fold of the log (services/autoscaler/fold.py): each row of its
# table is appended to its service's stream as one ScaleEvaluated carrying the row's state (all
# but the samples, which are events already), so the hysteresis in flight survives the upgrade;
# then the table goes. The payload is what libs.events.codec writes for that type (schema 1).
AUTOSCALER_TO_LOG = """
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT service, state FROM stratus_autoscaler_state ORDER BY service LOOP
        PERFORM stratus_append(
            ARRAY['service-' || r.service], ARRAY[NULL::integer], ARRAY[gen_random_uuid()],
            ARRAY['ScaleEvaluated'], ARRAY[1],
            ARRAY[jsonb_build_object(
                'type', 'ScaleEvaluated', 'service', r.service,
                'at', r.state -> 'last_evaluated_at', 'target', r.state -> 'target',
                'spot', coalesce(r.state -> 'spot', '0'), 'on_demand', coalesce(r.state -> 'on_demand', '0'),
                'decided_at', r.state -> 'decided_at',
                'candidate_target', r.state -> 'candidate_target',
                'candidate_since', r.state -> 'candidate_since',
                'wake_requested_at', r.state -> 'wake_requested_at',
                'retarget', coalesce(r.state -> 'retarget', 'false'),
                'reason', 'carried over from stratus_autoscaler_state (upgrade)', 'inputs', '{}'::jsonb
            )],
            ARRAY[NULL::uuid], ARRAY[NULL::uuid], ARRAY['{}'::jsonb], now()
        );
    END LOOP;
END $$;
DROP TABLE stratus_autoscaler_state;
"""


# dead-letter retry requests (libs/events/redelivery.py).
DEAD_LETTER_RETRIES_DDL = """
CREATE TABLE IF NOT EXISTS stratus_dead_letter_retries (
    dead_letter_id  bigint PRIMARY KEY REFERENCES stratus_dead_letters (id),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    requested_by    text NOT NULL DEFAULT '',
    attempts        integer NOT NULL DEFAULT 0,
    done_at         timestamptz,
    outcome         text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS stratus_dead_letter_retries_open
    ON stratus_dead_letter_retries (dead_letter_id) WHERE done_at IS NULL;
"""


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
    # 3: projection snapshots (state + position, per projection name and code fingerprint), the
    # tracking floor (every position at or below it counts as handled by that consumer: the
    # tracking rows below it are pruned), and leases (one leader per name, expiring).
    """
    CREATE TABLE stratus_projection_snapshots (
        name         text NOT NULL,
        fingerprint  text NOT NULL,
        position     bigint NOT NULL,
        skipped      bigint NOT NULL DEFAULT 0,
        state        bytea NOT NULL,
        written_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, fingerprint)
    );
    CREATE TABLE stratus_tracking_floor (
        consumer    text PRIMARY KEY,
        position    bigint NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE stratus_leases (
        name        text PRIMARY KEY,
        holder      text NOT NULL,
        expires_at  timestamptz NOT NULL,
        acquired_at timestamptz NOT NULL DEFAULT now(),
        term        bigint NOT NULL DEFAULT 1
    );
    CREATE INDEX stratus_dead_letters_consumer_idx ON stratus_dead_letters (consumer, position);
    """,
    # 4: libs.secrets (store.py)
    SECRETS_DDL,
    # 5: libs.secrets (endpoint.py)
    ENDPOINT_SECRETS_DDL,
    # 6: libs.auth (store.py)
    API_TOKENS_DDL,
    # 7: libs.bootstrap (tokens.py)
    BOOTSTRAP_DDL,
    # 8: the autoscaler's pre-log table (carried into the log and dropped by 10).
    AUTOSCALER_DDL,
    # 9: dead-letter retry requests (libs/events/redelivery.py)
    DEAD_LETTER_RETRIES_DDL,
    # 10: the autoscaler's table carried into the log (its state is a fold of it) and dropped.
    AUTOSCALER_TO_LOG,
    # 11: libs.bootstrap (tokens.py): the redeemer of a token, so a lost answer can be fetched again
    BOOTSTRAP_REPLAY_DDL,
    # 12: libs.bootstrap (tokens.py): a multi-node replica's node rank, node count and node IPs
    BOOTSTRAP_NODES_DDL,
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
