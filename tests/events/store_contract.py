"""The event store contract: every store adapter must pass these tests.

Subclass ``EventStoreContract`` in a ``test_*.py`` module, provide the ``event_store`` fixture
and implement ``insert_raw`` (writing a stored payload as an older writer would have: it is the
only way to exercise upcasting and unknown types, and it is adapter-specific by nature).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from libs.events.codec import decode
from libs.events.envelope import NewEvent
from libs.events.errors import ConcurrencyConflict, EventDecodeError, UnknownEventType
from libs.events.store import EventStore, StreamAppend
from libs.events.types import QpsSampled, ServiceDownRequested
from libs.events.upcasting import qps_sampled_v1_to_v2

from .helpers import requested, sampled

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class EventStoreContract:
    @pytest.fixture
    def event_store(self) -> EventStore:
        raise NotImplementedError("a concrete contract test class provides the store")

    async def insert_raw(
        self, store: EventStore, stream_id: str, event_type: str, schema_version: int, payload: str
    ) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ append and read

    async def test_append_then_read_stream(self, event_store: EventStore) -> None:
        cause, corr = uuid.uuid4(), uuid.uuid4()
        first = NewEvent(
            event=requested("a"), causation_id=cause, correlation_id=corr, trace={"traceparent": "00-x"}
        )
        r = await event_store.append("service-a", [first, sampled("a", 3)], expected_version=0)
        assert r.versions == [1, 2]
        assert r.positions[0] < r.positions[1]
        got = await event_store.read_stream("service-a")
        assert [g.event for g in got] == [requested("a"), sampled("a", 3)]
        assert [g.version for g in got] == [1, 2]
        assert [g.position for g in got] == r.positions
        assert got[0].event_id == first.event_id
        assert (got[0].causation_id, got[0].correlation_id, got[0].trace) == (
            cause,
            corr,
            {"traceparent": "00-x"},
        )
        assert got[0].event_type == "ServiceRequested"
        assert got[0].occurred_at.tzinfo is not None
        assert await event_store.stream_version("service-a") == 2
        assert [g.version for g in await event_store.read_stream("service-a", from_version=2)] == [2]

    async def test_reading_a_missing_stream_is_empty(self, event_store: EventStore) -> None:
        assert await event_store.read_stream("service-none") == []
        assert await event_store.stream_version("service-none") == 0

    async def test_append_without_expectation_goes_after_the_current_version(
        self, event_store: EventStore
    ) -> None:
        await event_store.append("service-b", [requested("b")])
        r = await event_store.append("service-b", [ServiceDownRequested(service="b")])
        assert r.versions == [2]

    # ------------------------------------------------------------------ optimistic concurrency

    async def test_conflict_names_the_stream_and_both_versions(self, event_store: EventStore) -> None:
        await event_store.append("service-c", [requested("c"), requested("c", 1)], expected_version=0)
        with pytest.raises(ConcurrencyConflict) as info:
            await event_store.append("service-c", [requested("c", 2)], expected_version=5)
        err = info.value
        assert (err.stream_id, err.expected_version, err.actual_version) == ("service-c", 5, 2)
        assert "service-c" in str(err) and "5" in str(err) and "2" in str(err)
        assert await event_store.stream_version("service-c") == 2

    async def test_a_stream_is_created_once(self, event_store: EventStore) -> None:
        await event_store.append("service-d", [requested("d")], expected_version=0)
        with pytest.raises(ConcurrencyConflict) as info:
            await event_store.append("service-d", [requested("d")], expected_version=0)
        assert (info.value.expected_version, info.value.actual_version) == (0, 1)

    async def test_concurrent_writers_at_one_version_one_wins(self, event_store: EventStore) -> None:
        await event_store.append("service-e", [requested("e")], expected_version=0)
        results = await asyncio.gather(
            *(event_store.append("service-e", [requested("e", i)], expected_version=1) for i in range(5)),
            return_exceptions=True,
        )
        assert sum(1 for r in results if isinstance(r, ConcurrencyConflict)) == 4
        assert await event_store.stream_version("service-e") == 2

    # ------------------------------------------------------------------ batches and transactions

    async def test_batched_append_across_streams(self, event_store: EventStore) -> None:
        await event_store.append("service-f", [requested("f")])
        r = await event_store.append_batches(
            [
                StreamAppend("service-f", [sampled("f", 1), sampled("f", 2)], expected_version=1),
                StreamAppend("service-g", [requested("g")], expected_version=0),
            ]
        )
        assert r.versions == [2, 3, 1]
        assert r.positions == sorted(r.positions) and len(set(r.positions)) == 3

    async def test_batched_append_is_all_or_nothing(self, event_store: EventStore) -> None:
        await event_store.append("service-h", [requested("h")])
        before = await event_store.last_position()
        with pytest.raises(ConcurrencyConflict) as info:
            await event_store.append_batches(
                [
                    StreamAppend("service-i", [requested("i")], expected_version=0),
                    StreamAppend("service-h", [sampled("h", 1)], expected_version=0),
                ]
            )
        assert info.value.stream_id == "service-h"
        assert await event_store.read_stream("service-i") == []
        assert await event_store.stream_version("service-h") == 1
        assert await event_store.last_position() == before

    async def test_transaction_commits_appends_and_tracking_together(self, event_store: EventStore) -> None:
        async with event_store.transaction() as tx:
            assert await tx.track("c1", 7)
            await tx.append("service-j", [requested("j")])
        assert await event_store.handled_positions("c1") == [7]
        assert len(await event_store.read_stream("service-j")) == 1

    async def test_transaction_rolls_back_appends_and_tracking_together(
        self, event_store: EventStore
    ) -> None:
        with pytest.raises(RuntimeError):
            async with event_store.transaction() as tx:
                await tx.track("c1", 8)
                await tx.append("service-k", [requested("k")])
                raise RuntimeError("handler failed")
        assert await event_store.handled_positions("c1") == []
        assert await event_store.read_stream("service-k") == []

    async def test_tracking_a_position_twice_reports_it(self, event_store: EventStore) -> None:
        async with event_store.transaction() as tx:
            assert await tx.track("c2", 1)
        async with event_store.transaction() as tx:
            assert not await tx.track("c2", 1)
            assert await tx.track("c3", 1)  # tracking is per consumer

    # ------------------------------------------------------------------ the global log

    async def test_read_everything_after_a_position(self, event_store: EventStore) -> None:
        r = await event_store.append("service-l", [requested("l"), sampled("l", 1), sampled("l", 2)])
        await event_store.append("service-m", [requested("m")])
        after_first = await event_store.read_all(after=r.positions[0])
        assert [e.position for e in after_first][:2] == r.positions[1:]
        assert len(after_first) == 3
        assert [e.position for e in await event_store.read_all(after=0, limit=2)] == r.positions[:2]
        only_qps = await event_store.read_all(types=["QpsSampled"])
        assert [e.position for e in only_qps] == r.positions[1:]
        assert await event_store.read_all(after=await event_store.last_position()) == []

    async def test_state_as_of_a_position_and_a_time(self, event_store: EventStore) -> None:
        for i in range(3):
            await event_store.append("service-n", [sampled("n", i)], now=T0 + timedelta(minutes=i))
        positions = [e.position for e in await event_store.read_all()]
        as_of_second = await event_store.read_all(until=positions[1])
        assert [e.event for e in as_of_second] == [sampled("n", 0), sampled("n", 1)]
        assert await event_store.position_at(T0 + timedelta(seconds=90)) == positions[1]
        assert await event_store.position_at(T0 - timedelta(seconds=1)) == 0
        by_time = await event_store.read_all(before_time=T0 + timedelta(minutes=1))
        assert [e.event for e in by_time] == [sampled("n", 0), sampled("n", 1)]

    async def test_tail_follows_new_appends_in_order(self, event_store: EventStore) -> None:
        await event_store.append("service-o", [requested("o")])
        stop = asyncio.Event()
        seen: list[int] = []

        async def follow() -> None:
            async for rec in event_store.tail(after=0, poll_interval=5.0, stop=stop):
                seen.append(rec.position)
                if len(seen) == 4:
                    stop.set()

        task = asyncio.create_task(follow())
        r = await event_store.append("service-o", [sampled("o", i) for i in range(3)])
        await asyncio.wait_for(task, 10)
        assert seen == sorted(seen) and seen[1:] == r.positions

    # ------------------------------------------------------------------ schema evolution

    async def test_upcaster_lifts_a_v1_qps_sample(self, event_store: EventStore) -> None:
        v1 = '{"type": "QpsSampled", "service": "p", "qps": 2.5, "window_seconds": 60}'
        await self.insert_raw(event_store, "service-p", "QpsSampled", 1, v1)
        [rec] = await event_store.read_stream("service-p")
        assert rec.event == QpsSampled(
            service="p", router_id="router-v1", window_start=0.0, window_seconds=60.0, requests=150
        )

    async def test_unknown_event_type_is_an_error(self, event_store: EventStore) -> None:
        await self.insert_raw(
            event_store, "service-q", "NoSuchEvent", 1, '{"type": "NoSuchEvent", "service": "q"}'
        )
        with pytest.raises(UnknownEventType) as info:
            await event_store.read_stream("service-q")
        assert info.value.event_type == "NoSuchEvent"

    async def test_undecodable_payload_is_an_error(self, event_store: EventStore) -> None:
        await self.insert_raw(
            event_store, "service-r", "ReplicaReady", 1, '{"type": "ReplicaReady", "service": 3}'
        )
        with pytest.raises(EventDecodeError):
            await event_store.read_stream("service-r")


# Plain (store-free) checks of the same contract pieces.


def test_upcaster_v1_to_v2_is_a_named_function() -> None:
    assert qps_sampled_v1_to_v2({"service": "s", "qps": 1.5, "window_seconds": 10.0}) == {
        "service": "s",
        "window_seconds": 10.0,
        "requests": 15,
        "router_id": "router-v1",
        "window_start": 0.0,
    }


def test_decoding_an_unknown_tag_raises() -> None:
    with pytest.raises(UnknownEventType):
        decode("Nope", 1, b"{}")
