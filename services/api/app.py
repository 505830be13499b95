"""The FastAPI application: ``create_app(deps)`` wires the routers to the given dependencies."""

from __future__ import annotations

from fastapi import FastAPI

from .deps import ApiDeps
from .errors import install_error_handlers
from .models import HealthOut
from .routers import bootstrap, clouds, events, logs, replicas, services

API_VERSION = "1"

DESCRIPTION = """\
The Stratus control plane API (SkyServe-compatible service YAML).

Writes append intent events to the event log (`ServiceRequested`, `ServiceUpdateRequested`,
`ServiceDownRequested`, `ReplicaTerminationRequested`, `PreemptionRequested`); reads are served
from the fleet projection rebuilt from that log. Every error is
`{"error": code, "message": what to fix, "issues": [{"field", "message", "line"}]}`.
Secret env values are stored encrypted, never in events.
"""


def create_app(deps: ApiDeps) -> FastAPI:
    app = FastAPI(title="Stratus API", version=f"{API_VERSION}.0", description=DESCRIPTION)
    install_error_handlers(app)
    app.include_router(services.build(deps))
    app.include_router(replicas.build(deps))
    app.include_router(logs.build(deps))
    app.include_router(events.build(deps))
    app.include_router(clouds.build(deps))
    app.include_router(bootstrap.build(deps))

    @app.get("/healthz", tags=["health"], summary="Liveness, and how far the projection has read the log")
    async def healthz() -> HealthOut:
        return HealthOut(status="ok", position=deps.projection.position)

    return app
