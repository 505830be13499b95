"""The router service (services/router/main.py) on a real event store: pools follow the log."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from router_backend import BackendFactory
from router_client import request, wait_until
from tls_cert import self_signed

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
from libs.secrets import ensure_schema
from libs.secrets.endpoint import (
    create_endpoint_key,
    ensure_endpoint_schema,
    revoke_endpoint_key,
    store_endpoint_tls,
)
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


async def _serving(rs: RouterService, name: str, url: str, text: str = SPEC) -> None:
    store = rs.host.store
    spec = spec_to_dict(load_spec(text))
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


TLS_SPEC = SPEC.replace("  replicas: 1\n", "  replicas: 1\n  tls: {keyfile: key.pem, certfile: cert.pem}\n")


async def test_tls_and_keys_come_from_the_secrets_tables(
    rs: RouterService, backends: BackendFactory, tmp_path: Path
) -> None:
    b = await backends()
    name = f"t{uuid.uuid4().hex[:6]}"
    store = rs.host.store
    cert_pem, key_pem = self_signed()
    await ensure_schema(store.pool)
    await ensure_endpoint_schema(store.pool)
    async with store.pool.acquire() as conn, conn.transaction():
        await store_endpoint_tls(conn, name, 1, cert_pem, key_pem, tmp_path)
        key_id, key = await create_endpoint_key(conn, name, "first")
    await _serving(rs, name, b.url, TLS_SPEC)
    ep = rs.router.endpoint(name)
    assert ep.tls is not None and ep.key_check is not None
    url = f"https://127.0.0.1:{ep.port}/echo"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cadata=cert_pem)) as client:
        assert (await client.get(url)).status_code == 401
        ok = await client.get(url, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json()["backend"] == "b"
        # rotation: a second key, both valid, then the first revoked
        async with store.pool.acquire() as conn:
            _, key2 = await create_endpoint_key(conn, name, "second")
        await rs.resync()
        for k in (key, key2):
            assert (await client.get(url, headers={"Authorization": f"Bearer {k}"})).status_code == 200
        async with store.pool.acquire() as conn:
            assert await revoke_endpoint_key(conn, name, key_id)
        await rs.resync()
        assert (await client.get(url, headers={"Authorization": f"Bearer {key}"})).status_code == 401
        assert (await client.get(url, headers={"Authorization": f"Bearer {key2}"})).status_code == 200
    assert len(b.requests) == 4  # the refused requests never reached the replica


async def test_tls_service_without_a_stored_pair_gets_no_endpoint(
    rs: RouterService, backends: BackendFactory
) -> None:
    b = await backends()
    name = f"n{uuid.uuid4().hex[:6]}"
    await _serving(rs, name, b.url, TLS_SPEC)
    assert name not in rs.router  # never served as plain HTTP
