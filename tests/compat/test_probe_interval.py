"""readiness_probe.endpoint_probe_interval_seconds and consecutive_failure_threshold_timeout,
honoured per service by the prober (SkyServe 0.14.1: one probe per interval; a replica that
was READY fails once its probes kept failing for the threshold)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from libs.events.store import EventStore
from libs.events.types import (
    ReplicaFailed,
    ReplicaLaunched,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.fleet.policy import ProbePolicy
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from libs.spec import load_spec, spec_to_dict
from services.prober.decide import ProbeState, probe_due
from services.prober.http_probe import HttpProber
from services.prober.main import build

NEW = ProbeState(service="s", replica_id=1, launched_at=0.0)
READY = ProbeState(
    service="s", replica_id=1, launched_at=0.0, ready=True, ever_ready=True, last_probe_at=100.0
)
STARTING = ProbeState(service="s", replica_id=1, launched_at=0.0, last_probe_at=100.0)


@pytest.mark.parametrize(
    ("state", "interval", "now", "due"),
    [
        (NEW, 10.0, 0.0, True),  # never probed
        (READY, 10.0, 105.0, False),
        (READY, 10.0, 109.6, True),  # within half a round of the interval
        (READY, 10.0, 110.0, True),
        (READY, None, 101.0, True),  # a spec recorded before the field: every round
        (STARTING, 10.0, 101.0, True),  # not READY yet: every round, startup is seen at once
        (STARTING, 10.0, 100.4, False),  # ... every round, not more often
        (READY, 0.5, 100.4, True),  # shorter than a round: every round
    ],
)
def test_probe_due(state: ProbeState, interval: float | None, now: float, due: bool) -> None:
    assert probe_due(state, ProbePolicy(interval_seconds=interval), now, round_seconds=1.0) is due


class Replica:
    """A replica that answers 200 until told to fail; counts the probes it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self.failing = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        status = b"503 Service Unavailable" if self.failing else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[tuple[Replica, str], tuple[Replica, str]]]:
    a, b = Replica(), Replica()
    sa = await asyncio.start_server(a.handle, "127.0.0.1", 0)
    sb = await asyncio.start_server(b.handle, "127.0.0.1", 0)
    async with sa, sb:
        yield (
            (a, f"http://127.0.0.1:{sa.sockets[0].getsockname()[1]}"),
            (b, f"http://127.0.0.1:{sb.sockets[0].getsockname()[1]}"),
        )


def _spec(probe: str) -> dict[str, object]:
    return spec_to_dict(
        load_spec(f"service:\n  readiness_probe: {probe}\nresources: {{ports: 8080}}\nrun: x\n")
    )


async def _deploy(store: EventStore, name: str, spec: dict[str, object], url: str) -> None:
    await store.append(service_stream(name), [ServiceRequested(service=name, version=1, spec=spec)])
    await store.append(
        replica_stream(name, 1),
        [
            ReplicaScheduled(service=name, replica_id=1, version=1),
            ReplicaLaunched(service=name, replica_id=1, instance_id=f"i-{name}", url=url),
        ],
    )


async def test_each_service_is_probed_at_its_own_interval_and_threshold(
    store: EventStore, replicas: tuple[tuple[Replica, str], tuple[Replica, str]], nats_url: str, unique: str
) -> None:
    (slow, slow_url), (fast, fast_url) = replicas
    # The prober's own round is 0.05 s; "slow" asks for 0.5 s and a 1 s failure threshold.
    await _deploy(
        store,
        "slow",
        _spec("{path: /, endpoint_probe_interval_seconds: 0.5, consecutive_failure_threshold_timeout: 1}"),
        slow_url,
    )
    await _deploy(store, "fast", _spec("{path: /, endpoint_probe_interval_seconds: 0.05}"), fast_url)
    settings = Settings(
        database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}", probe_interval=0.05,
        probe_failure_threshold=3600.0,
    )  # fmt: skip
    host = ServiceHost("prober", settings)
    build(host)
    running = asyncio.create_task(host.run())
    try:
        for _ in range(400):  # both READY, then 2 s of steady probing
            if slow.requests >= 1 and fast.requests >= 1:
                break
            await asyncio.sleep(0.01)
        start = (slow.requests, fast.requests)
        await asyncio.sleep(2.0)  # a measurement window, not synchronisation
        steady = (slow.requests - start[0], fast.requests - start[1])
        # About 4 probes against about 40: the ratio holds even on a loaded machine.
        assert 2 <= steady[0] <= 6, steady
        assert steady[1] >= 4 * steady[0], steady

        slow.failing = True  # READY, now failing: FAILED_PROBING after ~1 s, not after an hour
        failed: list[ReplicaFailed] = []
        for _ in range(100):
            failed = [
                e.event
                for e in await store.read_stream(replica_stream("slow", 1))
                if isinstance(e.event, ReplicaFailed)
            ]
            if failed:
                break
            await asyncio.sleep(0.05)
        assert [f.status for f in failed] == ["FAILED_PROBING"]
        assert "threshold 1s" in failed[0].reason
    finally:
        host.stop.set()
        await asyncio.wait_for(running, 10)


class Redirecting:
    """``/`` redirects to ``/ready`` (200); ``/loop`` redirects to itself."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = head.split(" ", 2)[1]
        if path == "/ready":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            target = "/loop" if path == "/loop" else "/ready"
            writer.write(f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())  # fmt: skip
        await writer.drain()
        writer.close()


async def test_probe_follows_redirects_as_skyserve() -> None:
    server = await asyncio.start_server(Redirecting().handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    prober = HttpProber()
    async with server:
        ready = await prober.probe(url, ProbePolicy(path="/", timeout_seconds=5))
        looping = await prober.probe(url, ProbePolicy(path="/loop", timeout_seconds=5))
    await prober.aclose()
    assert ready.ok and ready.status_code == 200
    assert not looping.ok and "redirect" in looping.reason.lower()
