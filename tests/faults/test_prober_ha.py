"""Two probers on one log: one leads and probes, each replica by its own bounded task, so a
replica that never answers does not hold back the next rounds of another (before, each round
waited for every probe: a replica starting up behind a hanging one was seen READY only after the
hanging probe's 15 s timeout); the standby records nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest

from libs.events.bus import connect
from libs.events.store import EventStore
from libs.events.types import (
    ReplicaLaunched,
    ReplicaReady,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.runtime.host import ServiceHost, bus_config
from libs.runtime.settings import Settings
from services.prober.main import Prober

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def http_server(answer: bool, ok_after: float = 0.0) -> AsyncIterator[str]:
    """A server that answers (503 for ``ok_after`` seconds, then 200), or one that accepts and
    never answers."""
    ok_at = time.monotonic() + ok_after
    held: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if not answer:
            held.append(writer)  # keep it open, say nothing
            return
        status = b"200 OK" if time.monotonic() >= ok_at else b"503 Starting"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()


async def test_a_hanging_replica_delays_no_other_and_one_prober_leads(
    store: EventStore, nats_url: str, unique: str, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path, database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}", probe_interval=0.2,
        lease_ttl=2.0, lease_renew=0.3,
    )  # fmt: skip
    hosts = [ServiceHost("prober", settings), ServiceHost("prober", settings)]
    probers = []
    for host in hosts:  # what services/prober/main.py's build does
        prober = Prober(host, settings.probe_failure_threshold)
        host.loop(settings.probe_interval, prober.round, name="probe")
        host.task(prober.close_on_stop)
        probers.append(prober)
    runs = [asyncio.create_task(h.run()) for h in hosts]
    try:
        async with http_server(answer=False) as hanging, http_server(answer=True, ok_after=1.0) as good:
            await store.append(service_stream("web"), [ServiceRequested(service="web", spec={})])
            for rid, url in ((1, hanging), (2, good)):
                await store.append(replica_stream("web", rid), [
                    ReplicaScheduled(service="web", replica_id=rid),
                    ReplicaLaunched(service="web", replica_id=rid, instance_id=f"i{rid}", url=url),
                ])  # fmt: skip
            launched = time.monotonic()
            deadline = launched + 20
            ready: list[int] = []
            while time.monotonic() < deadline:
                ready = [
                    r.event.replica_id for r in await store.read_stream(replica_stream("web", 2))
                    if isinstance(r.event, ReplicaReady)
                ]  # fmt: skip
                if ready:
                    break
                await asyncio.sleep(0.1)
            took = time.monotonic() - launched
            # The first probes fail (503) and the hanging replica's first probe is still in flight
            # (15 s timeout by default): READY comes from a later round all the same.
            assert ready == [2] and took < 8, (ready, took)
            await asyncio.sleep(1.0)  # several more rounds: still recorded once (one leader)
            stream = await store.read_stream(replica_stream("web", 2))
            again = [r for r in stream if isinstance(r.event, ReplicaReady)]
            assert len(again) == 1
            assert [p.lease.leading for p in probers].count(True) == 1
    finally:
        for h in hosts:
            h.stop.set()
        await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 30)
        nc = await connect(nats_url, name="cleanup")
        with contextlib.suppress(nats.errors.Error):
            await nc.jetstream().delete_stream(bus_config(settings).stream)
        await nc.close()
