"""The prober logs transitions at INFO and each probe at DEBUG (no httpx line per request)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from libs.events.store import EventStore
from libs.events.types import (
    ReplicaLaunched,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from services.prober.main import build


class Counter:
    def __init__(self) -> None:
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def replica() -> AsyncIterator[tuple[Counter, str]]:
    counter = Counter()
    server = await asyncio.start_server(counter.handle, "127.0.0.1", 0)
    async with server:
        yield counter, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_steady_probes_log_at_debug_only(
    store: EventStore,
    replica: tuple[Counter, str],
    nats_url: str,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter, url = replica
    spec = {"service": {"readiness_path": "/", "ports": 8080}, "resources": {"ports": [8080]}, "run": "x"}
    await store.append(service_stream("svc"), [ServiceRequested(service="svc", version=1, spec=spec)])
    await store.append(
        replica_stream("svc", 1),
        [
            ReplicaScheduled(service="svc", replica_id=1, version=1),
            ReplicaLaunched(service="svc", replica_id=1, instance_id="i-1", url=url),
        ],
    )
    caplog.set_level(logging.INFO)  # as a service process runs (httpx would log each request)
    caplog.set_level(logging.DEBUG, logger="stratus.prober")
    host = ServiceHost(
        "prober",
        Settings(database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}", probe_interval=0.02),
    )
    build(host)
    running = asyncio.create_task(host.run())
    try:
        for _ in range(500):
            if counter.requests >= 10:
                break
            await asyncio.sleep(0.02)
    finally:
        host.stop.set()
        await asyncio.wait_for(running, 10)
    assert counter.requests >= 10
    prober = [r for r in caplog.records if r.name == "stratus.prober"]
    info = [r.getMessage() for r in prober if r.levelno == logging.INFO]
    assert info == ["svc replica 1: ReplicaReady"]
    debug = [r.getMessage() for r in prober if r.levelno == logging.DEBUG]
    assert debug.count("svc replica 1: probe ok") >= 9, debug
    assert not [r for r in caplog.records if r.name == "httpx" and r.levelno >= logging.INFO]
