"""A service host starts even when the log holds an event this version cannot read (before, the
rebuild raised UnknownEventType and the supervisor restarted the process, forever)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats.errors
import pytest

from libs.events.bus import connect
from libs.events.store import EventStore
from libs.events.types import ServiceRequested, service_stream
from libs.runtime.host import ServiceHost, bus_config
from libs.runtime.settings import Settings
from tests.events.helpers import append_raw


async def test_a_host_starts_past_an_unknown_event_and_keeps_following(
    store: EventStore, nats_url: str, unique: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.append(service_stream("web"), [ServiceRequested(service="web", spec={})])
    poison = await append_raw(store, "service-web", "FromTheFuture", '{"type": "FromTheFuture"}')
    settings = Settings(home=tmp_path, database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}")
    host = ServiceHost("poisoned", settings)
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    async def until_stopped() -> None:  # what a service's consumers and loops do
        await host.stop.wait()

    host.task(until_stopped)

    async def follow_then_stop() -> None:
        await asyncio.wait_for(started.wait(), 30)
        assert host.fleet.position == poison and host.fleet.skipped == 1
        after = await store.append(service_stream("api"), [ServiceRequested(service="api", spec={})])
        await host.fleet.wait_for(after.last_position, 10)
        host.stop.set()

    try:
        await asyncio.wait_for(asyncio.gather(host.run(on_started), follow_then_stop()), 60)
        assert set(host.fleet.state.services) == {"web", "api"}
        assert any("cannot read; skipped" in r.getMessage() for r in caplog.records)
    finally:
        nc = await connect(nats_url, name="cleanup")
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(bus_config(settings).stream)
        await nc.close()
