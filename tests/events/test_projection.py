"""Projections: rebuild, state as of a position or a time, and a live projection."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from libs.events.envelope import RecordedEvent
from libs.events.errors import ProjectionBehind, ProjectionFailed, UnknownEventType
from libs.events.projection import LiveProjection, Projection, Snapshot
from libs.events.store import EventStore

from .helpers import append_raw, requested, sampled

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def count(state: Counter[str], rec: RecordedEvent) -> Counter[str]:
    """A pure fold: a new counter with one more of this event's type."""
    out = Counter(state)
    out[rec.event_type] += 1
    return out


COUNTS: Projection[Counter[str]] = Projection(initial=Counter, apply=count)
QPS_ONLY: Projection[Counter[str]] = Projection(initial=Counter, apply=count, types=frozenset({"QpsSampled"}))


async def history(store: EventStore) -> list[int]:
    """Minute i holds: a request (i == 0) or a QPS sample. Returns the positions."""
    positions = []
    for i in range(7):
        event = requested("web") if i == 0 else sampled("web", i)
        r = await store.append("service-web", [event], now=T0 + timedelta(minutes=i))
        positions += r.positions
    return positions


async def test_rebuild_folds_the_whole_log_in_batches(store: EventStore) -> None:
    positions = await history(store)
    snap = await COUNTS.rebuild(store, batch_size=3)  # 7 events: batches of 3, 3, 1
    assert snap == Snapshot(Counter({"ServiceRequested": 1, "QpsSampled": 6}), positions[-1])
    assert await COUNTS.rebuild(store, batch_size=100) == snap
    # Continuing from a snapshot folds only what came after it.
    await store.append("service-web", [sampled("web", 99)])
    more = await COUNTS.rebuild(store, after=snap, batch_size=3)
    assert more.state["QpsSampled"] == 7 and more.position == positions[-1] + 1


async def test_rebuild_of_an_empty_log(store: EventStore) -> None:
    assert await COUNTS.rebuild(store) == Snapshot(Counter(), 0)


async def test_types_limit_what_is_folded(store: EventStore) -> None:
    await history(store)
    assert (await QPS_ONLY.rebuild(store, batch_size=2)).state == Counter({"QpsSampled": 6})
    assert await QPS_ONLY.as_of(store, position=3, batch_size=1) == Counter({"QpsSampled": 2})


async def test_state_as_of_a_position(store: EventStore) -> None:
    positions = await history(store)
    assert await COUNTS.as_of(store, position=positions[2], batch_size=2) == Counter(
        {"ServiceRequested": 1, "QpsSampled": 2}
    )
    assert await COUNTS.as_of(store, position=0) == Counter()


async def test_state_as_of_a_time(store: EventStore) -> None:
    await history(store)
    # Stamped in the past but appended last: belongs to the state as of minute 3, not after it.
    await store.append("service-web", [sampled("web", 0)], now=T0 + timedelta(minutes=2, seconds=30))
    at = T0 + timedelta(minutes=3)
    assert await COUNTS.as_of(store, time=at, batch_size=2) == Counter(
        {"ServiceRequested": 1, "QpsSampled": 4}
    )
    assert await COUNTS.as_of(store, time=T0 - timedelta(seconds=1)) == Counter()


async def test_as_of_needs_exactly_one_bound(store: EventStore) -> None:
    with pytest.raises(ValueError):
        await COUNTS.as_of(store)
    with pytest.raises(ValueError):
        await COUNTS.as_of(store, position=1, time=T0)


async def test_live_projection_catches_up_and_follows(store: EventStore) -> None:
    positions = await history(store)
    async with LiveProjection(COUNTS, store, poll_interval=5.0) as live:
        assert live.position == positions[-1]
        assert live.state["QpsSampled"] == 6
        r = await store.append("service-web", [sampled("web", 7), sampled("web", 8)])
        state = await live.wait_for(r.last_position, timeout=5.0)
        assert state["QpsSampled"] == 8
        assert live.position >= r.last_position
        # Waiting for what is already folded returns at once.
        assert (await live.wait_for(1, timeout=0.01))["ServiceRequested"] == 1


async def test_waiting_for_a_position_not_yet_reached_times_out(store: EventStore) -> None:
    async with LiveProjection(COUNTS, store) as live:
        with pytest.raises(ProjectionBehind) as info:
            await live.wait_for(5, timeout=0.2)
        assert (info.value.wanted, info.value.reached) == (5, 0)


async def test_many_waiters_wake_as_the_log_advances(store: EventStore) -> None:
    async with LiveProjection(COUNTS, store) as live:
        waiters = [asyncio.create_task(live.wait_for(p, timeout=5.0)) for p in (1, 2, 3)]
        await asyncio.sleep(0.05)
        for i in range(3):
            await store.append("service-web", [sampled("web", i)])
        states = await asyncio.gather(*waiters)
        assert [s["QpsSampled"] >= n for s, n in zip(states, (1, 2, 3), strict=True)] == [True] * 3


# Rows of types this code does not know (a newer version added them: a rolling upgrade).
UNKNOWN = [
    ("NoSuchEvent", '{"type": "NoSuchEvent", "service": "web"}', 1),
    ("FromTheFuture", '{"type": "FromTheFuture"}', 1),
    ("AlsoNew", '{"type": "AlsoNew", "x": 1}', 3),
]
# Rows of a known type that cannot be read: wrong field types (a bug), a schema no upcaster knows.
BROKEN = [
    ("ReplicaReady", '{"type": "ReplicaReady", "service": 3}', 1),
    ("QpsSampled", '{"type": "QpsSampled", "service": "web"}', 99),
]


async def poisoned_history(store: EventStore) -> tuple[list[int], list[int]]:
    """A good event, then each unknown row followed by a good event. (good, unknown) positions."""
    good = (await store.append("service-web", [requested("web")])).positions
    poison = []
    for tag, payload, schema in UNKNOWN:
        poison.append(await append_raw(store, "service-web", tag, payload, schema))
        good += (await store.append("service-web", [sampled("web", 1)])).positions
    return good, poison


@pytest.mark.parametrize("batch_size", [1, 2, 100])
async def test_rebuild_passes_over_rows_of_unknown_types(
    store: EventStore, batch_size: int, caplog: pytest.LogCaptureFixture
) -> None:
    good, poison = await poisoned_history(store)
    with pytest.raises(UnknownEventType):
        await store.read_all()  # the strict read still says what is wrong
    snap = await COUNTS.rebuild(store, batch_size=batch_size)
    assert snap == Snapshot(Counter({"ServiceRequested": 1, "QpsSampled": 3}), good[-1], skipped=3)
    warned = [r.getMessage() for r in caplog.records if "skipping event" in r.getMessage()]
    assert [f"position {p} " in w for w, p in zip(warned, poison, strict=True)] == [True] * 3
    assert "NoSuchEvent" in warned[0] and "FromTheFuture" in warned[1]
    # State as of a position past the poison is computed too.
    assert await COUNTS.as_of(store, position=good[2], batch_size=batch_size) == Counter(
        {"ServiceRequested": 1, "QpsSampled": 2}
    )


async def test_a_live_projection_survives_rows_of_unknown_types(store: EventStore) -> None:
    good, _poison = await poisoned_history(store)  # at start-up (rebuild): no crash
    async with LiveProjection(COUNTS, store, poll_interval=5.0) as live:
        assert (live.position, live.skipped) == (good[-1], 3)
        # While following: an unknown row, then a good event behind it.
        bad = await append_raw(store, "service-web", "NoSuchEvent", '{"type": "NoSuchEvent"}')
        assert (await live.wait_for(bad, timeout=5.0))["QpsSampled"] == 3  # waiting on it returns
        after = (await store.append("service-web", [sampled("web", 2)])).last_position
        state = await live.wait_for(after, timeout=5.0)
        assert state == Counter({"ServiceRequested": 1, "QpsSampled": 4})
        assert live.skipped == 4


@pytest.mark.parametrize(("tag", "payload", "schema"), BROKEN)
async def test_a_known_event_that_cannot_be_read_stops_the_rebuild(
    store: EventStore, tag: str, payload: str, schema: int
) -> None:
    await store.append("service-web", [requested("web")])
    bad = await append_raw(store, "service-web", tag, payload, schema)
    await store.append("service-web", [sampled("web", 1)])
    with pytest.raises(ProjectionFailed) as caught:
        await COUNTS.rebuild(store)
    assert (caught.value.position, caught.value.event_type) == (bad, tag)
    assert f"position {bad}" in str(caught.value) and "service-web" in str(caught.value)


async def test_a_live_projection_stops_loudly_on_a_known_event_it_cannot_read(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    async with LiveProjection(COUNTS, store, poll_interval=5.0) as live:
        first = (await store.append("service-web", [requested("web")])).last_position
        await live.wait_for(first, timeout=5.0)
        bad = await append_raw(store, "service-web", "ReplicaReady", '{"type": "ReplicaReady", "service": 3}')
        await store.append("service-web", [sampled("web", 1)])
        failure = await asyncio.wait_for(live.wait_failed(), 10)
        assert isinstance(failure, ProjectionFailed) and failure.position == bad
        assert live.position == first  # nothing past the broken event was folded
        with pytest.raises(ProjectionFailed):
            await live.wait_for(bad, timeout=5.0)  # waiters hear of it rather than time out
    assert any(r.levelname == "CRITICAL" and f"position {bad}" in r.getMessage() for r in caplog.records)


def explode(state: Counter[str], rec: RecordedEvent) -> Counter[str]:
    if rec.event_type == "QpsSampled":
        raise ZeroDivisionError("a bug in apply")
    return count(state, rec)


async def test_an_apply_that_raises_stops_the_projection_naming_the_position(store: EventStore) -> None:
    await store.append("service-web", [requested("web")])
    bad = (await store.append("service-web", [sampled("web", 1)])).last_position
    with pytest.raises(ProjectionFailed) as caught:
        await Projection(initial=Counter, apply=explode).rebuild(store)
    assert caught.value.position == bad and "ZeroDivisionError" in str(caught.value)
