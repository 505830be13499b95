"""The FastAPI application: ``create_app(deps)`` wires the routers to the given dependencies.

Every router but the health check, the docs and ``/v1/bootstrap`` (which checks its own
one-time tokens) is included with the ``authorize`` dependency (``auth.PROTECTED``): deny
by default, so a new router is protected unless it is deliberately added to ``UNPROTECTED``.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware

from libs.events.projection import projection_health
from libs.telemetry.asgi import RequestCause

from .auth import AUTH_ERRORS, PROTECTED
from .deps import ApiDeps
from .docs import install_docs
from .errors import install_error_handlers
from .middleware import BodyGuard
from .models import HealthOut
from .routers import bootstrap, clouds, endpoint_keys, events, logs, replicas, services, tokens
from .routers.asyncapi import build as build_asyncapi
from .routers.dashboard import build as build_dashboard
from .routers.dashboard import build_page as build_dashboard_page
from .routers.dead_letters import build as build_dead_letters
from .routers.replay import build as build_replay

API_VERSION = "1"

DESCRIPTION = """\
The Stratus control plane API (SkyServe-compatible service YAML).

Every route but `/healthz` and `/v1/bootstrap` needs `Authorization: Bearer <API token>`:
role `viewer` may read, `admin` may also change things (`stratus auth`). Writes append intent
events to the event log (`ServiceRequested`, `ServiceUpdateRequested`, `ServiceDownRequested`,
`ReplicaTerminationRequested`, `PreemptionRequested`), each naming the token that made it
(`principal`); reads are served from the fleet projection rebuilt from that log. Every error is
`{"error": code, "message": what to fix, "issues": [{"field", "message", "line"}]}`.
Secret env values are stored encrypted, never in events.
"""

# Routers that authenticate on their own terms (a cloud instance's one-time bootstrap token).
UNPROTECTED = ("bootstrap",)


def create_app(deps: ApiDeps) -> FastAPI:
    app = FastAPI(
        title="Stratus API",
        version=f"{API_VERSION}.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.deps = deps
    install_docs(app)
    install_error_handlers(app)
    protected: list[APIRouter] = [
        services.build(deps),
        replicas.build(deps),
        logs.build(deps),
        events.build(deps),
        clouds.build(deps),
        tokens.build(deps),
        endpoint_keys.build(deps),
        build_replay(deps),
        build_dead_letters(deps),
        build_asyncapi(),
        build_dashboard(deps),
    ]
    for router in protected:
        app.include_router(router, dependencies=PROTECTED, responses=AUTH_ERRORS)
    app.include_router(bootstrap.build(deps))
    app.include_router(build_dashboard_page())  # a static page; its data routes need a token

    @app.get("/healthz", tags=["health"], summary="Liveness, and how far the projection has read the log")
    async def healthz(response: Response) -> HealthOut:
        h = await projection_health(deps.projection)
        if not h.healthy:
            response.status_code = 503  # a known event it cannot fold: this process must restart
        return HealthOut(
            status="ok" if h.healthy else "failing", position=h.position, lag=h.lag, skipped=h.skipped,
            failure=h.failure,
        )  # fmt: skip

    origins = [o.strip() for o in deps.settings.api_cors_origins.split(",") if o.strip()]
    if origins:  # no CORS headers at all unless configured
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip
    app.add_middleware(BodyGuard, max_body_bytes=deps.settings.api_max_body_bytes)
    app.add_middleware(RequestCause)  # outermost: appends carry the request as cause
    return app
