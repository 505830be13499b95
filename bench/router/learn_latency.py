"""How fast the router learns that a replica became ready or not ready (target: within 100 ms).

Runs the real path in one process: an event appended to the Postgres log -> the outbox relay ->
JetStream -> the router service's consumer -> its live projection -> the endpoint's pool. For
each round it appends ``ReplicaReady`` and times until a request through the endpoint is
answered by the replica (200), then appends ``ReplicaNotReady`` and times until the endpoint
answers 503. Baseline, same run: the relay hop alone (append -> a core-NATS subscriber sees the
published message).

    python -m bench.router.learn_latency [--rounds 30]

Starts its own Postgres and nats-server unless DATABASE_URL / NATS_URL are set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from libs.events.bus import connect
from libs.events.relay import Relay, RelayOptions
from libs.events.store import EventStore
from libs.events.types import (
    EndpointAssigned,
    ReplicaLaunched,
    ReplicaNotReady,
    ReplicaReady,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.runtime.host import ServiceHost, bus_config
from libs.runtime.settings import Settings
from libs.servers.nats_server import NatsServer
from libs.servers.postgres_server import PostgresServer
from libs.spec import load_spec, spec_to_dict
from services.router.main import build

SPEC = """
service:
  readiness_probe: /
  replicas: 1
resources:
  ports: 8080
run: python3 -m http.server 8080
"""


async def backend() -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def until_status(
    client: httpx.AsyncClient, url: str, status: int, t0: float, limit: float = 5.0
) -> float:
    while time.perf_counter() - t0 < limit:
        try:
            if (await client.get(url)).status_code == status:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"the endpoint did not answer {status} within {limit}s")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000


async def run(database_url: str, nats_url: str, home: Path, rounds: int) -> None:
    settings = Settings(
        home=home, nats_url=nats_url, database_url=database_url, bus_prefix=f"lat{uuid.uuid4().hex[:6]}",
        router_id=f"router-bench-{uuid.uuid4().hex[:6]}", qps_interval=3600.0,
    )
    store = await EventStore.connect(database_url)
    nc = await connect(nats_url, name="learn-latency")
    bus = bus_config(settings)
    relay_stop = asyncio.Event()
    relay = Relay(store, nc, bus, RelayOptions(name=f"bench-{uuid.uuid4().hex[:6]}"))
    relay_task = asyncio.create_task(relay.run(relay_stop))
    host = ServiceHost("router", settings)
    host_task = asyncio.create_task(host.run(build(host)))
    server, port = await backend()
    name = f"lat-{uuid.uuid4().hex[:6]}"
    published: dict[str, float] = {}

    async def seen(msg: object) -> None:
        published[str(getattr(msg, "subject", ""))] = time.perf_counter()

    sub = await nc.subscribe(f"{bus.prefix}.ev.{name}.>", cb=seen)
    try:
        spec = spec_to_dict(load_spec(SPEC))
        await store.append(service_stream(name), [ServiceRequested(service=name, spec=spec)])
        endpoint = ""
        for _ in range(200):
            recs = await store.read_stream(service_stream(name))
            ends = [r.event for r in recs if isinstance(r.event, EndpointAssigned)]
            if ends:
                endpoint = ends[-1].endpoint
                break
            await asyncio.sleep(0.05)
        assert endpoint, "the router assigned no endpoint"
        url = f"http://{endpoint}/"
        stream = replica_stream(name, 1)
        await store.append(stream, [
            ReplicaScheduled(service=name, replica_id=1),
            ReplicaLaunched(service=name, replica_id=1, instance_id="bench", url=f"http://127.0.0.1:{port}"),
        ])  # fmt: skip
        ready: list[float] = []
        not_ready: list[float] = []
        hops: list[float] = []
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(rounds):
                t0 = time.perf_counter()
                await store.append(stream, [ReplicaReady(service=name, replica_id=1)])
                ready.append(await until_status(client, url, 200, t0))
                subject = f"{bus.prefix}.ev.{name}.ReplicaReady"
                if subject in published:
                    hops.append(published.pop(subject) - t0)
                await asyncio.sleep(0.05)
                t0 = time.perf_counter()
                await store.append(stream, [ReplicaNotReady(service=name, replica_id=1, reason="bench")])
                not_ready.append(await until_status(client, url, 503, t0))
                await asyncio.sleep(0.05)
        print(f"router learn latency over {rounds} rounds (ms; target: within 100 ms)")
        print(f"  {'figure':<44} {'p50':>7} {'p99':>7} {'max':>7}")
        for label, xs in (
            ("append ReplicaReady -> routed (200)", ready),
            ("append ReplicaNotReady -> not routed (503)", not_ready),
            ("baseline: append -> relay published on NATS", hops),
        ):
            if xs:
                print(f"  {label:<44} {pct(xs, 0.5):7.2f} {pct(xs, 0.99):7.2f} {max(xs) * 1000:7.2f}")
        if hops:
            print(f"  ratio p50 ready/baseline: x{statistics.median(ready) / statistics.median(hops):.1f}")
    finally:
        await sub.unsubscribe()
        host.stop.set()
        relay_stop.set()
        await asyncio.gather(host_task, relay_task, return_exceptions=True)
        server.close()
        await server.wait_closed()
        await nc.close()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers: list[NatsServer | PostgresServer] = []
        database_url = os.environ.get("DATABASE_URL", "")
        nats_url = os.environ.get("NATS_URL", "")
        if not database_url:
            pg = PostgresServer(Path(tmp) / "pg")
            pg.start()
            servers.append(pg)
            database_url = pg.url
        if not nats_url:
            ns = NatsServer(Path(tmp) / "nats")
            ns.start()
            servers.append(ns)
            nats_url = ns.url
        try:
            asyncio.run(run(database_url, nats_url, Path(tmp) / "home", args.rounds))
        finally:
            for s in servers:
                s.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
