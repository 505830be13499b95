"""Projections: rebuild, state as of a position or a time, and a live projection."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from libs.events.envelope import RecordedEvent
from libs.events.errors import ProjectionBehind
from libs.events.projection import LiveProjection, Projection, Snapshot
from libs.events.store import EventStore

from .helpers import requested, sampled

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
