"""Audit checkpoints: a replay started from a checkpoint is the same state as the plain fold
from the start, by position and by time, on a real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.events.workload import as_batches, fleet_events
from libs.events.checkpoints import replay
from libs.events.store import EventStore
from libs.fleet.projection import FLEET

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_replays_from_checkpoints_equal_the_plain_fold(store: EventStore) -> None:
    events = fleet_events(3000)
    for i in range(0, len(events), 250):  # each batch a minute later than the one before
        await store.append_batches(as_batches(events[i : i + 250]), now=T0 + timedelta(minutes=i // 250))
    head = await store.last_position()

    first = await replay(FLEET, store, position=head, batch_size=300, every=400)
    assert first.from_checkpoint == 0 and first.state == await FLEET.as_of(store, position=head)
    checkpoints = await store.pool.fetchval("SELECT count(*) FROM stratus_replay_checkpoints")
    assert checkpoints >= 5

    for p in (1, 777, 1500, 2222, head):
        got = await replay(FLEET, store, position=p, batch_size=300, every=400)
        assert got.state == await FLEET.as_of(store, position=p), p
        if p > 1000:
            assert got.from_checkpoint > 0 and got.folded < p
    for minutes in (0.5, 3.5, 7.2, 11.9, 30):
        when = T0 + timedelta(minutes=minutes)
        got = await replay(FLEET, store, time=when, batch_size=300)
        assert got.state == await FLEET.as_of(store, time=when), minutes
    late = await replay(FLEET, store, time=T0 + timedelta(minutes=9.5), batch_size=300)
    assert late.from_checkpoint > 0  # a checkpoint whose events all occurred by then serves it


async def test_the_api_leaves_checkpoints_from_its_live_projection(store: EventStore) -> None:
    import asyncio

    from libs.events.checkpoints import checkpoint_live, ensure_schema
    from libs.events.projection import LiveProjection

    events = fleet_events(2000)
    await store.append_batches(as_batches(events), now=T0)
    head = await store.last_position()
    await ensure_schema(store.pool)
    live = LiveProjection(FLEET, store, poll_interval=0.2)
    await live.start()
    stop = asyncio.Event()
    task = asyncio.create_task(checkpoint_live(FLEET, live, store, stop, every=500, interval=0.05))
    try:
        for _ in range(200):
            if await store.pool.fetchval("SELECT count(*) FROM stratus_replay_checkpoints"):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await live.stop()
    got = await replay(FLEET, store, position=head)
    assert got.from_checkpoint == head and got.folded == 0  # the first audit starts where the API was
    assert got.state == await FLEET.as_of(store, position=head)
