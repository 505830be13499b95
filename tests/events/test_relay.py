"""The outbox relay against a real Postgres and a real nats-server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs.events.bus import H_MSG_ID, H_POSITION, BusConfig, connect, decode_parts, ensure_stream
from libs.events.relay import Relay, RelayOptions
from libs.events.store import EventStore
from libs.servers.nats_server import NatsServer

from .helpers import eventually, requested, sampled, stream_messages

REPO = Path(__file__).resolve().parents[2]


def fast(name: str = "default", **kw: float) -> RelayOptions:
    opts: dict[str, float] = {
        "poll_interval": 5.0,
        "standby_interval": 0.1,
        "backoff_max": 0.5,
        "ack_timeout": 2.0,
    }
    opts.update(kw)
    return RelayOptions(name=name, batch_size=int(opts.pop("batch_size", 64)), **opts)


@asynccontextmanager
async def running(relay: Relay) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def caught_up(relay: Relay, store: EventStore) -> bool:
    return await relay.offset() == await store.last_position()


async def append_many(store: EventStore, n: int, service: str = "web") -> None:
    for i in range(0, n, 10):
        await store.append(f"service-{service}", [sampled(service, j) for j in range(i, min(n, i + 10))])


async def test_publishes_the_log_in_position_order_with_event_ids(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await append_many(store, 25, "a")
    await store.append("service-b", [requested("b")])
    relay = Relay(store, nc, bus, fast(batch_size=8))  # several pipelined batches
    async with running(relay):
        await eventually(lambda: caught_up(relay, store))
    records = await store.read_all()
    msgs = await stream_messages(js, bus.stream)
    assert [int(m.headers[H_POSITION]) for m in msgs if m.headers] == [r.position for r in records]
    assert [m.headers[H_MSG_ID] for m in msgs if m.headers] == [str(r.event_id) for r in records]
    assert [decode_parts(m.headers or {}, m.data or b"") for m in msgs] == records
    assert msgs[-1].subject == f"{bus.prefix}.ev.b.ServiceRequested"


async def test_resumes_from_its_offset_and_retries_are_dropped_as_duplicates(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    await append_many(store, 20)
    relay = Relay(store, nc, bus, fast())
    async with running(relay):
        await eventually(lambda: caught_up(relay, store))
    assert await relay.offset() == 20
    # A new process resumes where the last one stopped.
    await append_many(store, 10)
    relay2 = Relay(store, nc, bus, fast())
    async with running(relay2):
        await eventually(lambda: caught_up(relay2, store))
    assert relay2.published == 10
    # A crash after publishing but before saving the offset: everything is sent again,
    # and JetStream drops it all as duplicates.
    await store.pool.execute("UPDATE stratus_relay_offsets SET position = 0")
    relay3 = Relay(store, nc, bus, fast())
    async with running(relay3):
        await eventually(lambda: caught_up(relay3, store))
    assert relay3.published == 30
    assert (await js.stream_info(bus.stream)).state.messages == 30


async def test_woken_by_notify_not_by_polling(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    relay = Relay(store, nc, bus, fast(poll_interval=60.0))
    async with running(relay):
        await eventually(lambda: asyncio.sleep(0, relay.is_leader))
        started = time.monotonic()
        await store.append("service-web", [requested("web")])
        await eventually(lambda: caught_up(relay, store), within=5.0, every=0.01)
        assert time.monotonic() - started < 2.0


async def test_one_active_relay_per_name_and_a_hot_standby_takes_over(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    first = Relay(store, nc, bus, fast("r"))
    async with running(first) as stop_first:
        await eventually(lambda: asyncio.sleep(0, first.is_leader))
        second, other = Relay(store, nc, bus, fast("r")), Relay(store, nc, bus, fast("other-name"))
        async with running(second), running(other):
            await eventually(lambda: asyncio.sleep(0, other.is_leader))  # another name: its own lock
            await asyncio.sleep(0.3)  # several standby intervals
            assert not second.is_leader
            await append_many(store, 5)
            await eventually(lambda: caught_up(first, store))
            stop_first.set()
            await eventually(lambda: asyncio.sleep(0, second.is_leader))
            await append_many(store, 5)
            await eventually(lambda: caught_up(second, store))
            assert second.published == 5
    assert (await js.stream_info(bus.stream)).state.messages == 10


async def test_republish_restores_what_jetstream_lost(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig, fresh_db_url: str, nats_url: str
) -> None:
    await append_many(store, 12)
    relay = Relay(store, nc, bus, fast())
    async with running(relay):
        await eventually(lambda: caught_up(relay, store))
    await js.delete_stream(bus.stream)  # JetStream loses everything
    await ensure_stream(js, bus)
    assert await relay.republish(5) == 8
    msgs = await stream_messages(js, bus.stream)
    assert [int(m.headers[H_POSITION]) for m in msgs if m.headers] == list(range(5, 13))
    # The CLI does the same; what JetStream still has is dropped as duplicates.
    cmd = [
        sys.executable, "-m", "libs.events", "relay", "--database-url", fresh_db_url, "--nats-url", nats_url,
        "--stream", bus.stream, "--prefix", bus.prefix, "--republish-from", "1",
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    msgs = await stream_messages(js, bus.stream)
    assert sorted(int(m.headers[H_POSITION]) for m in msgs if m.headers) == list(range(1, 13))


async def test_survives_a_nats_restart_without_passing_unacked_events(
    store: EventStore, dedicated_nats: NatsServer, unique: str
) -> None:
    bus = BusConfig(stream=f"R_{unique}", prefix=f"r{unique}")
    nc = await connect(dedicated_nats.url, name="relay-test")
    try:
        js = nc.jetstream()
        relay = Relay(store, nc, bus, fast(ack_timeout=0.5))
        async with running(relay):
            await append_many(store, 10)
            await eventually(lambda: caught_up(relay, store))
            dedicated_nats.stop()
            await append_many(store, 10)
            await asyncio.sleep(1.5)  # publishes fail and are retried with backoff
            assert await relay.offset() == 10  # never past an unacked publish
            dedicated_nats.start()
            await eventually(lambda: caught_up(relay, store), within=20)
        info = await js.stream_info(bus.stream)
        assert info.state.messages == 20
        positions = sorted(
            int(m.headers[H_POSITION]) for m in await stream_messages(js, bus.stream) if m.headers
        )
        assert positions == list(range(1, 21))
    finally:
        await nc.close()


def test_cli_needs_a_database_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "libs.events", "relay"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "DATABASE_URL" in done.stderr


async def test_a_lost_stream_is_recreated_and_refilled_above_the_lowest_tracking_floor(
    store: EventStore, nc: NATS, js: JetStreamContext, bus: BusConfig
) -> None:
    from libs.events.tracking import init_floor

    await append_many(store, 20)
    await init_floor(store.pool, "some-consumer", 12)  # it handled everything up to 12
    relay = Relay(store, nc, bus, fast(poll_interval=0.2))
    async with running(relay):
        await eventually(lambda: caught_up(relay, store))
        await js.delete_stream(bus.stream)  # NATS lost its store
        await append_many(store, 1)  # the next publish finds no stream

        async def refilled() -> bool:
            try:
                info = await js.stream_info(bus.stream)
            except Exception:
                return False
            return bool(info.state.messages == 21 - 12)

        await eventually(refilled, within=20)
    positions = [
        int(m.headers["Stratus-Position"]) for m in await stream_messages(js, bus.stream) if m.headers
    ]
    assert sorted(positions) == list(range(13, 22))
