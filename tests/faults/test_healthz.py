"""/healthz says how far behind the projection is, and 503 once it cannot fold an event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import ServiceRequested, service_stream
from libs.fleet.projection import FLEET
from libs.runtime.settings import Settings
from services.api.app import create_app
from services.api.deps import ApiDeps
from tests.events.helpers import append_raw


async def test_healthz_reports_lag_skipped_and_a_failure(store: EventStore, tmp_path: Path) -> None:
    await append_raw(store, "service-web", "FromTheFuture", '{"type": "FromTheFuture"}')
    live = LiveProjection(FLEET, store, poll_interval=0.2)
    await live.start()
    try:
        settings = Settings(home=tmp_path, database_url=store.dsn)
        app = create_app(ApiDeps(store=store, projection=live, settings=settings))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            body = (await http.get("/healthz")).json()
            assert body["status"] == "ok" and body["skipped"] == 1 and body["lag"] == 0
            await store.append(service_stream("web"), [ServiceRequested(service="web", spec={})])
            bad = await append_raw(
                store, "service-web", "ReplicaReady", '{"type": "ReplicaReady", "service": 3}'
            )
            await asyncio.wait_for(live.wait_failed(), 10)
            r = await http.get("/healthz")
            assert r.status_code == 503
            body = r.json()
            assert body["status"] == "failing" and f"position {bad}" in body["failure"]
            assert body["lag"] >= 1  # the broken event is not folded
    finally:
        await live.stop()
