"""One ordered migration list for every table; the other packages' DDL is the same text."""

from __future__ import annotations

from libs.auth import store as auth_store
from libs.bootstrap import tokens as bootstrap_tokens
from libs.events import redelivery
from libs.events.schema import MIGRATIONS, migrate
from libs.events.store import EventStore
from libs.secrets import endpoint as secrets_endpoint
from libs.secrets import store as secrets_store


def test_every_package_table_is_in_the_one_list_with_the_same_text() -> None:
    for module in (secrets_store, secrets_endpoint, auth_store, bootstrap_tokens):
        ddl = module._SCHEMA.strip()
        assert any(m.strip() == ddl for m in MIGRATIONS), f"{module.__name__}'s tables are not in MIGRATIONS"
    assert any(m.strip() == redelivery.SCHEMA.strip() for m in MIGRATIONS), "redelivery.py's table"


async def test_migrations_apply_once_in_order(store: EventStore) -> None:
    async with store.pool.acquire() as conn:
        assert await migrate(conn) == len(MIGRATIONS)  # again: nothing to do, no error
        versions = [
            r[0] for r in await conn.fetch("SELECT version FROM stratus_schema_migrations ORDER BY 1")
        ]
        tables = {
            r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert {
        "stratus_events", "stratus_projection_snapshots", "stratus_tracking_floor", "stratus_leases",
        "stratus_secrets", "stratus_endpoint_keys", "stratus_api_tokens", "stratus_bootstrap_tokens",
        "stratus_dead_letter_retries",
    } <= tables  # fmt: skip


async def test_the_package_schemas_still_run_after_the_list(store: EventStore) -> None:
    await secrets_store.ensure_schema(store.pool)
    await auth_store.ensure_schema(store.pool)
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stratus_api_tokens") == 0
