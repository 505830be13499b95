"""The store contract run against the Postgres store, plus what is Postgres-specific."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from libs.events.codec import decode
from libs.events.errors import EventDecodeError
from libs.events.store import EventStore

from .helpers import requested
from .store_contract import (
    EventStoreContract,
    test_decoding_an_unknown_tag_raises,
    test_upcaster_v1_to_v2_is_a_named_function,
)

__all__ = ["test_decoding_an_unknown_tag_raises", "test_upcaster_v1_to_v2_is_a_named_function"]


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def event_store(self, store: EventStore) -> EventStore:
        return store

    async def insert_raw(
        self, store: EventStore, stream_id: str, event_type: str, schema_version: int, payload: str
    ) -> None:
        # Through the same SQL function as every append, with an old schema version.
        await store.pool.execute(
            "SELECT * FROM stratus_append(ARRAY[$1], ARRAY[NULL]::int[], ARRAY[$2::uuid], ARRAY[$3],"
            " ARRAY[$4::int], ARRAY[$5::jsonb], ARRAY[NULL]::uuid[], ARRAY[NULL]::uuid[],"
            " ARRAY['{}'::jsonb], now())",
            stream_id, uuid.uuid4(), event_type, schema_version, payload,
        )  # fmt: skip

    async def test_the_log_refuses_updates_and_deletes(self, store: EventStore) -> None:
        await store.append("service-z", [requested("z")])
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await store.pool.execute("UPDATE stratus_events SET stream_id = 'x'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await store.pool.execute("DELETE FROM stratus_events")
        assert len(await store.read_stream("service-z")) == 1


def test_a_schema_newer_than_this_code_reads_is_an_error() -> None:
    # Read as today's schema, a newer writer's payload would be silently misread.
    with pytest.raises(EventDecodeError, match="schema v99"):
        decode("ServiceRequested", 99, b'{"type": "ServiceRequested", "service": "a"}')
