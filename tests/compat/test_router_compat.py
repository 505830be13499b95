"""The router honours SkyServe 0.14.1's ``load_balancer.stream_timeout_seconds`` (per service, and
after an update) and ``instance_aware_least_load`` (load divided by each replica's
accelerator's ``target_qps_per_replica``), driven by the recorded events as in production."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import (
    Placement,
    ReplicaLaunched,
    ReplicaReady,
    ReplicaScheduled,
    ServiceRequested,
    ServiceUpdateRequested,
    replica_stream,
    service_stream,
)
from libs.fleet.projection import FLEET
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from libs.spec import load_spec, spec_to_dict
from services.router.balance import InstanceAwareLeastLoad
from services.router.main import RouterService


@dataclass
class Load:
    replica_id: int
    in_flight: int = 0


def test_instance_aware_weighs_load_by_target_qps() -> None:
    policy = InstanceAwareLeastLoad()
    policy.set_capacities({1: 10.0, 2: 2.0})
    a, b = Load(1), Load(2)
    for _ in range(12):
        chosen = policy.choose([a, b])
        assert chosen is not None
        chosen.in_flight += 1
    assert (a.in_flight, b.in_flight) in ((10, 2), (9, 3))
    unknown = Load(3)  # no capacity known: 1.0, as SkyServe
    assert policy.choose([Load(1, 5), unknown]) is unknown
    assert policy.choose([]) is None


class Slow:
    """A replica that answers after ``delay`` seconds; counts requests."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await asyncio.sleep(self.delay)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def rs(store: EventStore, fresh_db_url: str, tmp_path: Path) -> AsyncIterator[RouterService]:
    settings = Settings(home=tmp_path, database_url=fresh_db_url, router_id="router-compat")
    host = ServiceHost("router", settings)
    host._store = store
    host._fleet = LiveProjection(FLEET, store, poll_interval=0.05)
    await host._fleet.start()
    service = RouterService(host, "router-compat", "127.0.0.1")
    yield service
    await service.router.close()
    await host._fleet.stop()


async def _replica(delay: float) -> tuple[Slow, asyncio.Server, str]:
    slow = Slow(delay)
    server = await asyncio.start_server(slow.handle, "127.0.0.1", 0)
    return slow, server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _serve(rs: RouterService, name: str, text: str, urls: dict[int, tuple[str, str]]) -> int:
    """Record the service and its READY replicas ({id: (url, accelerator)}); the endpoint port."""
    store = rs.host.store
    requested = await store.append(
        service_stream(name), [ServiceRequested(service=name, spec=spec_to_dict(load_spec(text)))]
    )
    last = requested.last_position
    for rid, (url, acc) in urls.items():
        at = Placement(accelerators={acc: 1.0} if acc else {})
        res = await store.append(replica_stream(name, rid), [
            ReplicaScheduled(service=name, replica_id=rid, placement=at),
            ReplicaLaunched(service=name, replica_id=rid, instance_id=f"i{rid}", url=url, placement=at),
            ReplicaReady(service=name, replica_id=rid, url=url),
        ])  # fmt: skip
        last = res.last_position
    await rs.host.fleet.wait_for(last, 5.0)
    await rs.sync(name)
    port = rs.router.endpoint(name).port
    assert port is not None
    return port


def _timeout_spec(seconds: float) -> str:
    return f"""
service:
  readiness_probe: /
  replicas: 1
  load_balancer: {{stream_timeout_seconds: {seconds}}}
resources: {{ports: 8080}}
run: serve
"""


async def test_stream_timeout_is_the_services_and_follows_updates(rs: RouterService) -> None:
    slow, server, url = await _replica(1.5)
    name = f"st{uuid.uuid4().hex[:6]}"
    async with server:
        port = await _serve(rs, name, _timeout_spec(0.3), {1: (url, "")})
        async with httpx.AsyncClient(timeout=20) as client:
            began = time.monotonic()
            cut = await client.get(f"http://127.0.0.1:{port}/")
            took = time.monotonic() - began
            assert cut.status_code == 504 and took < 1.4, (cut.status_code, took)

            spec = spec_to_dict(load_spec(_timeout_spec(30)))
            res = await rs.host.store.append(
                service_stream(name), [ServiceUpdateRequested(service=name, version=2, spec=spec)]
            )
            await rs.host.fleet.wait_for(res.last_position, 5.0)
            await rs.sync(name)
            waited = await client.get(f"http://127.0.0.1:{port}/")
            assert waited.status_code == 200 and waited.text == "ok"
    assert slow.requests == 2


class Streamer:
    """A replica that answers a chunked stream: one chunk after each of ``gaps`` seconds."""

    def __init__(self, gaps: list[float]) -> None:
        self.gaps = gaps

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            for gap in self.gaps:
                await asyncio.sleep(gap)  # the replica is slow between tokens (not synchronisation)
                writer.write(b"2\r\nok\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def test_stream_timeout_bounds_each_gap_between_body_bytes_not_the_whole_stream(
    rs: RouterService,
) -> None:
    """SkyServe passes stream_timeout_seconds to httpx as its read timeout: it bounds the wait for
    the head and every wait for the next body byte, never the stream's whole duration."""
    steady = Streamer([0.0] + [0.3] * 5)  # 1.5 s in all, never 1 s without a byte
    stalled = Streamer([0.0, 30.0])  # one chunk, then silence
    name_ok, name_cut = f"so{uuid.uuid4().hex[:6]}", f"sc{uuid.uuid4().hex[:6]}"
    server_ok = await asyncio.start_server(steady.handle, "127.0.0.1", 0)
    server_cut = await asyncio.start_server(stalled.handle, "127.0.0.1", 0)
    async with server_ok, server_cut:
        url_ok = f"http://127.0.0.1:{server_ok.sockets[0].getsockname()[1]}"
        url_cut = f"http://127.0.0.1:{server_cut.sockets[0].getsockname()[1]}"
        port_ok = await _serve(rs, name_ok, _timeout_spec(1.0), {1: (url_ok, "")})
        port_cut = await _serve(rs, name_cut, _timeout_spec(0.5), {1: (url_cut, "")})
        async with httpx.AsyncClient(timeout=20) as client:
            began = time.monotonic()
            whole = await client.get(f"http://127.0.0.1:{port_ok}/")
            assert whole.status_code == 200 and whole.text == "ok" * 6
            assert time.monotonic() - began >= 1.4  # longer than the timeout, streamed whole

            got = b""
            began = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):  # cut: no last chunk
                async with client.stream("GET", f"http://127.0.0.1:{port_cut}/") as cut:
                    assert cut.status_code == 200
                    async for part in cut.aiter_raw():
                        got += part
            took = time.monotonic() - began
    assert got == b"ok" and 0.4 < took < 5.0, (got, took)
    assert rs.router.endpoint(name_cut).waiting == {}


async def test_stream_timeout_does_not_cut_a_client_that_reads_slowly(rs: RouterService) -> None:
    """A client that stops reading stalls the stream through back-pressure (the router pauses the
    replica's side): that is no replica stall, so the stream timeout does not cut it."""
    size = 16 * 1024 * 1024

    async def bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()  # until the router closes
        writer.close()

    name = f"sp{uuid.uuid4().hex[:6]}"
    server = await asyncio.start_server(bulk, "127.0.0.1", 0)
    async with server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        port = await _serve(rs, name, _timeout_spec(0.3), {1: (url, "")})
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        endpoint = rs.router.endpoint(name)
        deadline = time.monotonic() + 10
        while not any(c.write_paused for c in endpoint.clients) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # poll (bounded) until the router holds back the response
        assert any(c.write_paused for c in endpoint.clients)
        await asyncio.sleep(1.0)  # the client reads nothing for more than 3 stream timeouts
        data = await asyncio.wait_for(reader.read(), 20)  # then all of it, until the router closes
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == size


INSTANCE_AWARE = """
service:
  readiness_probe: /
  load_balancing_policy: instance_aware_least_load
  replica_policy:
    min_replicas: 2
    max_replicas: 4
    target_qps_per_replica: {A100: 10, L4: 2}
resources: {ports: 8080, accelerators: {A100: 1, L4: 1}}
run: serve
"""


async def test_instance_aware_spreads_concurrent_requests_by_accelerator(rs: RouterService) -> None:
    a100, server_a, url_a = await _replica(1.0)
    l4, server_b, url_b = await _replica(1.0)
    name = f"ia{uuid.uuid4().hex[:6]}"
    async with server_a, server_b:
        port = await _serve(rs, name, INSTANCE_AWARE, {1: (url_a, "A100"), 2: (url_b, "L4")})
        assert rs.router.pool(name).policy == "instance_aware_least_load"
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=50)) as client:
            answers = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/") for _ in range(12)))
    assert all(r.status_code == 200 for r in answers)
    # least_load would split 6 / 6; weighed by 10 and 2 QPS it is 10 / 2 (9 / 3 on a tie-break)
    assert (a100.requests, l4.requests) in ((10, 2), (9, 3)), (a100.requests, l4.requests)


async def test_replicas_zero_answers_at_once_instead_of_holding(rs: RouterService) -> None:
    """``replicas: 0`` (accepted as by SkyServe) has nothing to wake: 503 at once, not held."""
    name = f"z{uuid.uuid4().hex[:6]}"
    port = await _serve(rs, name, "service: {replicas: 0}\nresources: {ports: 8080}\nrun: serve\n", {})
    assert not rs.router.endpoint(name).hold_when_empty
    async with httpx.AsyncClient(timeout=20) as client:
        began = time.monotonic()
        r = await client.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 503 and time.monotonic() - began < 5
