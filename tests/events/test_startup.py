"""Start-up in constant time: telemetry left out in SQL, snapshots, the tail replayed."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest

from libs.events.envelope import RecordedEvent
from libs.events.projection import LiveProjection, Projection
from libs.events.snapshots import SnapshotCodec, load_snapshot
from libs.events.store import EventStore
from libs.fleet.fold import fold
from libs.fleet.projection import FLEET, FLEET_SNAPSHOTS

from .helpers import append_raw, requested, sampled


def count(state: Counter[str], rec: RecordedEvent) -> Counter[str]:
    out = Counter(state)
    out[rec.event_type] += 1
    return out


def codec(fingerprint: str = "v1") -> SnapshotCodec[Counter[str]]:
    return SnapshotCodec(
        name="counts", fingerprint=fingerprint, encode=lambda c: msgspec.json.encode(dict(c)),
        decode=lambda b: Counter(msgspec.json.decode(b, type=dict[str, int])),
    )  # fmt: skip


REQUESTS_ONLY = Projection(initial=Counter, apply=count, types=frozenset({"ServiceRequested"}))


async def test_excluded_types_are_not_read_but_the_position_moves_past_them(store: EventStore) -> None:
    first = (await store.append("service-web", [requested("web")])).last_position
    for i in range(5):
        await store.append("service-web", [sampled("web", i)])
    page = await store.read_page(exclude=["QpsSampled"])
    assert [r.position for r in page.records] == [first]
    assert page.last_position == await store.last_position()  # the head: the samples are behind
    # A full page stops at its last row (more may follow).
    await store.append("service-web", [requested("api")])
    page = await store.read_page(exclude=["QpsSampled"], limit=1)
    assert (page.rows, page.last_position) == (1, first)
    snap = await REQUESTS_ONLY.rebuild(store, batch_size=1)
    assert snap.state == Counter({"ServiceRequested": 2}) and snap.position == await store.last_position()


async def test_a_live_projection_waits_past_excluded_events(store: EventStore) -> None:
    async with LiveProjection(REQUESTS_ONLY, store, poll_interval=5.0) as live:
        sample = (await store.append("service-web", [sampled("web", 1)])).last_position
        # The sample is not read, yet waiting for its position returns (the autoscaler does).
        assert await live.wait_for(sample, timeout=5.0) == Counter()


async def test_unknown_types_are_still_read_and_counted_with_a_type_filter(store: EventStore) -> None:
    await append_raw(store, "service-web", "NoSuchEvent", '{"type": "NoSuchEvent"}')
    snap = await REQUESTS_ONLY.rebuild(store)
    assert snap.skipped == 1


async def test_a_projection_starts_from_its_snapshot_and_replays_only_the_tail(store: EventStore) -> None:
    projection = Projection(initial=Counter, apply=count, snapshots=codec())
    for i in range(30):
        await store.append("service-web", [sampled("web", i)])
    async with LiveProjection(projection, store, snapshot_interval=3600) as live:
        assert live.replayed == 30 and live.state["QpsSampled"] == 30
    stored = await load_snapshot(store.pool, "counts", "v1")  # written on stop
    assert stored is not None and stored.position == 30
    await store.append("service-web", [requested("web")])
    async with LiveProjection(projection, store) as live:
        assert live.replayed == 1  # the tail only
        assert live.state == Counter({"QpsSampled": 30, "ServiceRequested": 1})
    # Another fingerprint (changed code) never loads it: it rebuilds from the start.
    other = Projection(initial=Counter, apply=count, snapshots=codec("v2"))
    async with LiveProjection(other, store) as live:
        assert live.replayed == 31 and live.state["QpsSampled"] == 30


async def test_a_snapshot_never_goes_back_and_is_written_periodically(store: EventStore) -> None:
    projection = Projection(initial=Counter, apply=count, snapshots=codec())
    await store.append("service-web", [requested("web")])
    await projection.save(store, await projection.rebuild(store))
    older = await projection.rebuild(store, until=0)
    assert not await projection.save(store, older)  # position 0: nothing to write
    async with LiveProjection(projection, store, snapshot_interval=0.05, poll_interval=0.1) as live:
        last = 0
        for i in range(3):
            last = (await store.append("service-web", [sampled("web", i)])).last_position
            await live.wait_for(last, 5.0)
            await asyncio.sleep(0.06)  # past the interval: the next page writes one
        for _ in range(100):
            stored = await load_snapshot(store.pool, "counts", "v1")
            if stored is not None and stored.position >= last - 1:
                break
            await asyncio.sleep(0.05)
        assert stored is not None and stored.position >= last - 1


async def test_a_corrupt_snapshot_is_ignored_with_a_warning(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.append("service-web", [requested("web")])
    await store.pool.execute(
        "INSERT INTO stratus_projection_snapshots (name, fingerprint, position, state)"
        " VALUES ('counts', 'v1', 1, 'not json')"
    )
    projection = Projection(initial=Counter, apply=count, snapshots=codec())
    snap, replayed = await projection.start(store)
    assert (snap.state, replayed) == (Counter({"ServiceRequested": 1}), 1)
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_the_fleet_state_round_trips_through_its_snapshot_codec() -> None:
    from bench.fleet.synthetic import synthetic

    state = fold(synthetic(3000))
    assert state.services  # a real fleet, replicas with every kind of field
    assert FLEET_SNAPSHOTS.decode(FLEET_SNAPSHOTS.encode(state)) == state
    assert FLEET.excluded is not None and "QpsSampled" in FLEET.excluded
