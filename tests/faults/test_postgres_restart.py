"""Postgres crashed (every process killed at once) and restarted under a live projection and a
relay: on a private Postgres started by this test (the machine's shared one is never killed).

The projection polls only once a minute here, so catching up within seconds after the restart
proves its LISTEN connection was noticed gone and opened again (before, it silently fell back
to polling); the relay keeps its lease through the outage or takes it again, and publishes what
was appended after the restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest

from libs.events.bus import BusConfig, connect
from libs.events.envelope import RecordedEvent
from libs.events.errors import StoreUnavailable
from libs.events.projection import LiveProjection, Projection
from libs.events.relay import Relay, RelayOptions
from libs.events.store import EventStore
from libs.servers.ports import wait_for_port
from libs.servers.postgres_server import PostgresServer
from tests.events.helpers import eventually, requested

pytestmark = pytest.mark.timeout(180)


def count(state: Counter[str], rec: RecordedEvent) -> Counter[str]:
    out = Counter(state)
    out[rec.event_type] += 1
    return out


COUNTS: Projection[Counter[str]] = Projection(initial=Counter, apply=count)


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def crash(server: PostgresServer) -> None:
    """Stop Postgres the way a crash does: ``pg_ctl stop -m immediate`` (every backend killed, no
    checkpoint; the restart runs crash recovery)."""
    from libs.servers.postgres_server import _bin_dir

    server._cmd(str(_bin_dir() / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and wait_for_port(server.host, server.port, 0.1):
        time.sleep(0.1)


@contextlib.asynccontextmanager
async def relaying(store: EventStore, nats_url: str) -> AsyncIterator[tuple[Relay, BusConfig]]:
    unique = uuid.uuid4().hex[:8]
    bus = BusConfig(stream=f"T_PG_{unique}", prefix=f"tpg{unique}")
    nc = await connect(nats_url, name="pg-restart")
    relay = Relay(store, nc, bus, RelayOptions(poll_interval=60.0, standby_interval=0.2, lease_ttl=2.0))
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay, bus
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(bus.stream)
        await nc.close()


async def test_projection_and_relay_survive_a_postgres_kill(
    private_pg: PostgresServer, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="libs.events")
    store = await EventStore.connect(private_pg.url)
    try:
        async with (
            LiveProjection(COUNTS, store, poll_interval=60.0) as live,
            relaying(store, nats_url) as (relay, _),
        ):
            first = (await store.append("s", [requested("a")])).last_position
            await live.wait_for(first, 10)
            await eventually(lambda: asyncio.sleep(0, relay.is_leader), within=10)
            # The test Postgres runs with synchronous_commit off: a crash loses the last few
            # hundred ms of commits. Flushed first, so the crash tests reconnection, not that.
            await store.pool.execute("CHECKPOINT")
            crash(private_pg)
            # Down: the store says so in its own terms (a transient error), not asyncpg's or OSError.
            with pytest.raises(StoreUnavailable):
                await store.append("s", [requested("lost")])
            with pytest.raises(StoreUnavailable):
                await store.read_stream("s")
            with pytest.raises(StoreUnavailable):
                async with store.transaction():
                    pass
            await asyncio.to_thread(private_pg.start)
            appended = 0

            async def append_after_restart() -> bool:
                nonlocal appended
                try:
                    appended = (await store.append("s", [requested("b")])).last_position
                except Exception:
                    return False  # the pool's connections are dead until replaced
                return True

            await eventually(append_after_restart, within=30, every=0.2)
            restarted = time.monotonic()
            await live.wait_for(appended, 30)
            assert time.monotonic() - restarted < 15  # woken by NOTIFY again, not the 60 s poll
            assert live.state["ServiceRequested"] >= 2

            async def published() -> bool:
                try:
                    return await relay.offset() >= appended
                except Exception:
                    return False

            await eventually(published, within=30, every=0.2)
        messages = [r.getMessage() for r in caplog.records]
        assert any("LISTEN connection to Postgres was lost" in m for m in messages)  # noticed
        assert any("following the log again" in m for m in messages)  # and said so when back
    finally:
        await store.close()
