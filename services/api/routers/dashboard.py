"""The web dashboard: a static page (``/dashboard``) and the one data route it adds
(``/v1/dashboard/services/{name}/history``); the rest it reads from ``/v1/services``.

The page holds no data and needs no token to load; every data request it makes carries the
API token as a bearer header, like any client. The token is given once, in a login form or in
the URL *fragment* (``/dashboard#token=...``, which browsers never send to a server, so it is in
no access log or Referer); the page moves it to ``sessionStorage`` (this tab only, gone when it
closes) and removes it from the address bar at once. A strict Content-Security-Policy (scripts
and styles from this origin only, no inline script, no framing) keeps injected markup from
reading it; the page renders event text with ``textContent``, never as HTML.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel

from libs.fleet.projection import FLEET
from libs.fleet.status import replica_status

from .. import commands
from ..dashboard_history import TYPES, history
from ..deps import ApiDeps
from ..errors import NotFound
from .services import ERRORS

STATIC = Path(__file__).resolve().parent.parent / "static" / "dashboard"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The range replay starts from (FLEET.as_of) and the events read after it.
MAX_MINUTES = 24 * 60
HISTORY_BATCH = 5000


class HistoryOut(BaseModel):
    service: str
    since: datetime
    qps: list[tuple[float, float]]
    ready_replicas: list[tuple[float, int]]
    decisions: list[dict[str, Any]]


def build_page() -> APIRouter:
    """The page and its two assets: public, static, outside the API schema."""
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard")
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)

    @router.get("/dashboard/{asset}")
    async def asset(asset: str) -> Response:
        if asset not in ASSETS:
            raise NotFound(f"no dashboard asset {asset!r}")
        return FileResponse(STATIC / asset, media_type=ASSETS[asset], headers=SECURITY_HEADERS)

    return router


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/dashboard", tags=["dashboard"], responses=ERRORS)

    @router.get(
        "/services/{name}/history", summary="QPS, ready replicas and decisions over time (from the log)"
    )
    async def service_history(
        name: str,
        minutes: Annotated[int, Query(ge=1, le=MAX_MINUTES, description="How far back.")] = 60,
    ) -> HistoryOut:
        commands.find_service(deps.projection.state, name, live=False)
        since = datetime.fromtimestamp(deps.clock(), UTC) - timedelta(minutes=minutes)
        start = await deps.store.position_at(since)
        before = await FLEET.as_of(deps.store, position=start, batch_size=10_000)
        svc = before.services.get(name)
        ready = [r.replica_id for r in svc.replicas.values() if replica_status(r) == "READY"] if svc else []
        records = []
        cursor = start
        while True:
            page = await deps.store.read_page(after=cursor, limit=HISTORY_BATCH, types=TYPES)
            records.extend(page.records)
            cursor = page.last_position
            if page.rows < HISTORY_BATCH:
                break
        h = history(name, ready, since.timestamp(), records)
        return HistoryOut(service=name, since=since, qps=h.qps, ready_replicas=h.ready, decisions=h.decisions)

    return router
