"""The API in-process against a real Postgres: over ASGI (``api``) or a real uvicorn (``live``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.fleet import FleetState
from libs.runtime.settings import Settings
from libs.secrets import ensure_schema
from services.api.app import create_app
from services.api.deps import ApiDeps, fleet_projection

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
    http: httpx.AsyncClient
    deps: ApiDeps
    store: EventStore
    settings: Settings
    projection: LiveProjection[FleetState]


@pytest.fixture
async def api(store: EventStore, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(home=tmp_path / "home", database_url=store.dsn)
    await ensure_schema(store.pool)
    projection = LiveProjection(fleet_projection(), store, poll_interval=0.2)
    await projection.start()
    deps = ApiDeps(
        store=store, projection=projection, settings=settings, poll_interval=0.05, heartbeat_seconds=0.5,
        secrets_schema_ready=True,
    )  # fmt: skip
    app = create_app(deps)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://stratus-api") as http:
            yield Api(http=http, deps=deps, store=store, settings=settings, projection=projection)
    finally:
        deps.stopping.set()
        await projection.stop()


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
