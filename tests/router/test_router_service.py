"""The router service (services/router/main.py) on a real event store: pools follow the log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from router_backend import BackendFactory
from router_client import request, wait_until

from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import (
    ReplicaDrained,
    ReplicaLaunched,
    ReplicaReady,
    ReplicaScheduled,
    ReplicaTerminationRequested,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.fleet.projection import FLEET
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from libs.spec import load_spec, spec_to_dict
from services.router.main import RouterService

SPEC = """
service:
  readiness_probe: /
  replicas: 1
resources:
  ports: 8080
run: python3 -m http.server 8080
"""


@pytest.fixture
async def rs(store: EventStore, fresh_db_url: str, tmp_path: Path) -> AsyncIterator[RouterService]:
    """A RouterService over the test's store, its projection started, no bus (syncs are driven)."""
    settings = Settings(home=tmp_path, database_url=fresh_db_url, router_id="router-test")
    host = ServiceHost("router", settings)
    host._store = store
    host._fleet = LiveProjection(FLEET, store, poll_interval=0.05)
    await host._fleet.start()
    service = RouterService(host, "router-test", "127.0.0.1")
    yield service
    for task in list(service._drains.values()):
        task.cancel()
    await service.router.close()
    await host._fleet.stop()


async def _serving(rs: RouterService, name: str, url: str) -> None:
    store = rs.host.store
    spec = spec_to_dict(load_spec(SPEC))
    await store.append(service_stream(name), [ServiceRequested(service=name, spec=spec)])
    res = await store.append(replica_stream(name, 1), [
        ReplicaScheduled(service=name, replica_id=1),
        ReplicaLaunched(service=name, replica_id=1, instance_id="i-1", url=url),
        ReplicaReady(service=name, replica_id=1, url=url),
    ])  # fmt: skip
    await rs.host.fleet.wait_for(res.last_position, 5.0)
    await rs.sync(name)


async def _drained_events(store: EventStore, name: str) -> list[ReplicaDrained]:
    recs = await store.read_stream(replica_stream(name, 1))
    return [r.event for r in recs if isinstance(r.event, ReplicaDrained)]


async def test_replica_drained_is_recorded_once(rs: RouterService, backends: BackendFactory) -> None:
    """Syncs that run before the router's projection shows its own ReplicaDrained (a resync, or
    any event of the service) must not record it again (issue 13: three times per replica)."""
    b = await backends()
    name = f"d{uuid.uuid4().hex[:6]}"
    await _serving(rs, name, b.url)
    port = rs.router.endpoint(name).port
    assert port is not None and (await request(port, "GET", "/echo")).status == 200
    store = rs.host.store
    res = await store.append(
        replica_stream(name, 1), [ReplicaTerminationRequested(service=name, replica_id=1, drain_seconds=30)]
    )
    await rs.host.fleet.wait_for(res.last_position, 5.0)
    await rs.host.fleet.stop()  # the projection lags from here on: it never shows ReplicaDrained
    await rs.sync(name)  # drains the replica and watches it: nothing in flight, so drained at once
    await wait_until(lambda: not rs._drains, "the drain watch to finish")
    for _ in range(3):  # a resync and two more events before the projection catches up
        await rs.sync(name)
        await wait_until(lambda: not rs._drains, "the drain watch to finish")
    drained = await _drained_events(store, name)
    assert len(drained) == 1, drained
    assert drained[0].router_id == "router-test"
