"""The API in-process against a real Postgres: over ASGI (``api``) or a real uvicorn (``live``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats.errors
import pytest
import uvicorn
from nats.aio.subscription import Subscription

from libs.auth import read_token_file, token_file
from libs.events.bus import connect as connect_bus
from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.fleet import FleetState
from libs.replica_logs import ReplicaLogClient, serve_replica_logs
from libs.runtime.settings import Settings
from libs.secrets import ensure_schema
from libs.secrets.endpoint import ensure_endpoint_schema
from services.api.app import create_app
from services.api.deps import ApiDeps, fleet_projection
from services.api.main import bootstrap_auth
from services.provisioner.clouds.local import LocalProvider
from services.provisioner.logs_server import ProviderLogLocator

SERVICE_YAML = """\
service:
  readiness_probe: /
  replicas: 2
resources:
  ports: 8080
  cpus: 2
run: python -m http.server 8080
"""


@dataclass
class Api:
    http: httpx.AsyncClient  # with the admin token
    deps: ApiDeps
    store: EventStore
    settings: Settings
    projection: LiveProjection[FleetState]
    token: str  # the first admin token, as the API bootstrapped it into STRATUS_HOME
    anon: httpx.AsyncClient  # the same app, no token
    logs_server: Subscription  # the provisioner's side of replica logs

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def api(store: EventStore, tmp_path: Path, nats_url: str, unique: str) -> AsyncIterator[Api]:
    settings = Settings(
        home=tmp_path / "home", database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}"
    )
    await ensure_schema(store.pool)
    await ensure_endpoint_schema(store.pool)
    await bootstrap_auth(store, settings)  # what the API does at start
    token = read_token_file(token_file(settings.home))
    assert token is not None
    # The provisioner's side of replica logs (the local provider's files), on a real NATS.
    nc = await connect_bus(nats_url, name="api-test")
    locator = ProviderLogLocator(LocalProvider(settings.provisioner_dir))
    logs_sub = await serve_replica_logs(nc, settings.bus_prefix, locator)
    projection = LiveProjection(fleet_projection(), store, poll_interval=0.2)
    await projection.start()
    deps = ApiDeps(
        store=store, projection=projection, settings=settings, poll_interval=0.05, heartbeat_seconds=0.5,
        secrets_schema_ready=True, replica_logs=ReplicaLogClient(nc, settings.bus_prefix),
    )  # fmt: skip
    app = create_app(deps)
    transport = httpx.ASGITransport(app=app)
    admin = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://stratus-api", headers=admin) as http,
            httpx.AsyncClient(transport=transport, base_url="http://stratus-api") as anon,
        ):
            yield Api(
                http=http, deps=deps, store=store, settings=settings, projection=projection, token=token,
                anon=anon, logs_server=logs_sub,
            )  # fmt: skip
    finally:
        deps.stopping.set()
        await projection.stop()
        with contextlib.suppress(nats.errors.BadSubscriptionError):
            await logs_sub.unsubscribe()
        await nc.close()


class _TestServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test process keeps its own handlers
        yield


@dataclass
class Live:
    api: Api
    url: str


@pytest.fixture
async def live(api: Api) -> AsyncIterator[Live]:
    """The same app served by uvicorn on 127.0.0.1 (a free port), for streaming and the CLI."""
    config = uvicorn.Config(
        create_app(api.deps), host="127.0.0.1", port=0, log_level="warning", lifespan="off",
        timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = _TestServer(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(api=api, url=f"http://127.0.0.1:{port}")
    finally:
        api.deps.stopping.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
