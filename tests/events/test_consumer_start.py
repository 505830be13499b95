"""A consumer created now starts at its projection's position and expires when unused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from libs.events.bus import BusConfig
from libs.events.consumer import Consumer, ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.store import EventStore, Transaction
from libs.events.tracking import floor

from .helpers import eventually, publish_all, requested


async def test_a_new_consumer_starts_at_its_start_time_and_floor(
    nc: NATS, js: JetStreamContext, bus: BusConfig, store: EventStore
) -> None:
    for i in range(3):
        await store.append("s", [requested(f"old{i}")])
    await publish_all(js, bus, store)
    await asyncio.sleep(0.05)  # the old messages' stream timestamps are before the start time
    start = datetime.now(UTC)
    head = await store.last_position()
    seen: list[int] = []

    async def handle(rec: RecordedEvent, tx: Transaction) -> None:
        seen.append(rec.position)

    options = ConsumerOptions(fetch_timeout=0.2, start_time=start, start_position=head, inactive_threshold=30)
    consumer = Consumer(nc, name="late", handler=handle, store=store, bus=bus, options=options)
    await consumer.subscribe()
    info = await js.consumer_info(bus.stream, "late")
    assert info.config.deliver_policy == DeliverPolicy.BY_START_TIME
    assert info.config.inactive_threshold == 30
    assert await floor(store.pool, "late") == head
    new = (await store.append("s", [requested("new")])).last_position
    await publish_all(js, bus, store, after=head)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def handled_new() -> bool:
        return new in seen

    await eventually(handled_new)
    stop.set()
    await asyncio.wait_for(task, 15)
    assert seen == [new]
    # Bound again later (a restart): the consumer keeps its start; JetStream refuses to change it.
    later = ConsumerOptions(start_time=start + timedelta(hours=1), start_position=new, inactive_threshold=30)
    again = Consumer(nc, name="late", handler=handle, store=store, bus=bus, options=later)
    await again.subscribe()
    info = await js.consumer_info(bus.stream, "late")
    assert info.config.opt_start_time is not None and info.config.opt_start_time < later.start_time
    assert await floor(store.pool, "late") == head  # an existing consumer's floor is not moved
    await again.unsubscribe()
