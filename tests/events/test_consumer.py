"""The consumer helper: tracking, filters, concurrency, heartbeats, shutdown, untracked mode."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs.events.bus import BusConfig
from libs.events.consumer import Consumer, ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.errors import (
    BusUnavailable,
    ConcurrencyConflict,
    EventDecodeError,
    PermanentError,
    ProjectionBehind,
    StoreUnavailable,
    TransientError,
)
from libs.events.lifecycle import Backoff, backoff_delay, install_stop_signals
from libs.events.outcomes import classify
from libs.events.store import EventStore, Transaction
from libs.events.types import ServiceTerminated

from .helpers import eventually, publish_all, publish_recorded, requested, sampled


@asynccontextmanager
async def consuming(consumer: Consumer) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def opts(**kw: object) -> ConsumerOptions:
    base: dict[str, object] = {"fetch_timeout": 0.2, "backoff_initial": 0.05, "backoff_max": 0.2}
    base.update(kw)
    return ConsumerOptions(**base)  # type: ignore[arg-type]


async def derive(rec: RecordedEvent, tx: Transaction) -> None:
    """A handler with an effect in Postgres: one derived event per source event."""
    await tx.append("derived", [rec.caused(ServiceTerminated(service="derived", reason=str(rec.position)))])


async def derived_reasons(store: EventStore) -> list[str]:
    return [
        r.event.reason for r in await store.read_stream("derived") if isinstance(r.event, ServiceTerminated)
    ]


async def test_tracked_handler_effects_commit_once_even_when_redelivered(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web"), sampled("web", 1), sampled("web", 2)])
    records = await publish_all(js, bus, store)
    # The same events again under new message ids (as after a republish past the window).
    for rec in records:
        await publish_recorded(js, bus, rec, msg_id=f"again-{rec.event_id}")
    consumer = Consumer(nc, name="c-derive", handler=derive, store=store, bus=bus, options=opts())
    async with consuming(consumer):
        await eventually(lambda: asyncio.sleep(0, consumer.stats.handled + consumer.stats.skipped == 6))
    assert sorted(await derived_reasons(store)) == sorted(str(r.position) for r in records)
    assert await store.handled_positions("c-derive") == [r.position for r in records]
    assert (consumer.stats.handled, consumer.stats.skipped) == (3, 3)
    info = await js.consumer_info(bus.stream, "c-derive")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_filter_subjects_select_types(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web"), sampled("web", 1)])
    await store.append("service-api", [sampled("api", 1), requested("api")])
    await publish_all(js, bus, store)
    seen: list[tuple[str, str]] = []

    async def remember(rec: RecordedEvent) -> None:
        seen.append((rec.event.service, rec.event_type))

    filters = (bus.filter_for(event_type="QpsSampled"), bus.filter_for(service="api"))
    consumer = Consumer(
        nc, name="c-filter", handler=remember, track=False, bus=bus, options=opts(filter_subjects=filters)
    )
    async with consuming(consumer):
        await eventually(lambda: asyncio.sleep(0, len(seen) == 3))
        await asyncio.sleep(0.3)
    assert sorted(seen) == [("api", "QpsSampled"), ("api", "ServiceRequested"), ("web", "QpsSampled")]


async def test_untracked_mode_writes_nothing_to_postgres(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web")])
    await publish_all(js, bus, store)
    table: dict[str, int] = {}

    async def route(rec: RecordedEvent) -> None:
        table[rec.event.service] = rec.position

    consumer = Consumer(nc, name="c-memory", handler=route, track=False, bus=bus, options=opts())
    async with consuming(consumer):
        await eventually(lambda: asyncio.sleep(0, table == {"web": 1}))
    assert await store.handled_positions("c-memory") == []


async def test_processes_up_to_n_messages_at_once(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [sampled("web", i) for i in range(6)])
    await publish_all(js, bus, store)
    running, peak, done = 0, 0, 0

    async def slow(rec: RecordedEvent, tx: Transaction) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.3)
        running -= 1
        done += 1

    consumer = Consumer(nc, name="c-conc", handler=slow, store=store, bus=bus, options=opts(concurrency=3))
    started = time.monotonic()
    async with consuming(consumer):
        await eventually(lambda: asyncio.sleep(0, done == 6))
    assert peak == 3
    assert time.monotonic() - started < 6 * 0.3


async def test_long_handlers_send_in_progress_and_are_not_redelivered(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web")])
    await publish_all(js, bus, store)
    calls: list[int] = []

    async def long(rec: RecordedEvent, tx: Transaction) -> None:
        calls.append(rec.position)
        await asyncio.sleep(2.2)  # more than twice ack_wait

    consumer = Consumer(
        nc, name="c-long", handler=long, store=store, bus=bus, options=opts(ack_wait=1.0, heartbeat=0.2)
    )
    async with consuming(consumer):
        await eventually(lambda: asyncio.sleep(0, consumer.stats.handled == 1), within=10)
        await asyncio.sleep(1.2)  # a redelivery (after ack_wait) would show up here
    assert calls == [1]
    assert consumer.stats.skipped == 0


async def test_stop_lets_the_message_in_flight_finish_and_be_acked(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await store.append("service-web", [requested("web"), sampled("web", 1)])
    await publish_all(js, bus, store)
    entered, release = asyncio.Event(), asyncio.Event()

    async def blocking(rec: RecordedEvent, tx: Transaction) -> None:
        entered.set()
        await release.wait()
        await derive(rec, tx)

    consumer = Consumer(
        nc, name="c-stop", handler=blocking, store=store, bus=bus, options=opts(ack_wait=30.0)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(entered.wait(), 10)
    stop.set()
    await asyncio.sleep(0.2)
    assert not task.done()  # waits for the handler
    release.set()
    await asyncio.wait_for(task, 10)
    assert consumer.stats.handled == 1
    assert await store.handled_positions("c-stop") == [1]
    info = await js.consumer_info(bus.stream, "c-stop")
    assert info.ack_floor is not None and info.ack_floor.stream_seq == 1  # acked, not left to time out
    assert info.num_redelivered == 0
    # The rest is picked up by the next run, with the first one not handled again.
    again = Consumer(nc, name="c-stop", handler=derive, store=store, bus=bus, options=opts())
    async with consuming(again):
        await eventually(lambda: asyncio.sleep(0, again.stats.handled == 1))
    assert sorted(await derived_reasons(store)) == ["1", "2"]


async def test_sigterm_sets_the_stop_event() -> None:
    stop = asyncio.Event()
    remove = install_stop_signals(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5)
    finally:
        remove()


def test_a_tracked_consumer_needs_a_store(nc: NATS) -> None:
    with pytest.raises(ValueError, match="store"):
        Consumer(nc, name="x", handler=derive, store=None)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (TransientError("later"), "transient"),
        (StoreUnavailable("pg down"), "transient"),
        (BusUnavailable("nats down"), "transient"),
        (ProjectionBehind(9, 7, 1.0), "transient"),
        (ConcurrencyConflict("s", 1, 2), "transient"),
        (ConnectionResetError(), "transient"),
        (TimeoutError(), "transient"),
        (PermanentError("never"), "permanent"),
        (EventDecodeError("X", "bad"), "permanent"),
        (KeyError("bug"), "unexpected"),
        (PermissionError(13, "denied"), "unexpected"),  # not every OSError is an outage
        (FileNotFoundError(2, "no such file"), "unexpected"),
        (ConnectionRefusedError(111, "refused"), "transient"),
        (ZeroDivisionError(), "unexpected"),
    ],
)
def test_what_a_failure_means(exc: Exception, outcome: str) -> None:
    assert classify(exc) == outcome


@pytest.mark.parametrize(
    ("attempt", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)]
)
def test_nak_delays_grow_exponentially_up_to_a_cap(attempt: int, delay: float) -> None:
    assert backoff_delay(attempt, initial=0.5, maximum=30.0) == delay


def test_backoff_resets_after_success() -> None:
    b = Backoff(0.1, 1.0)
    assert [b.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    b.reset()
    assert b.next() == 0.1
