"""``/v1/events``: the recorded history, filtered and paginated; ``/v1/events/stream`` follows it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from libs.events.envelope import RecordedEvent
from libs.events.errors import ProjectionBehind
from libs.events.types import EVENT_TYPES_BY_TAG

from ..deps import ApiDeps
from ..errors import Invalid
from ..models import EventOut, EventPageOut
from ..views import event_out
from .services import ERRORS

BATCH = 500
# Rows one request may scan for matches; a page can come back short with has_more=True.
MAX_SCAN = 10_000
# occurred_at is stamped just before the append lock, so it can trail position order slightly.
CLOCK_MARGIN = timedelta(seconds=5)
NDJSON = "application/x-ndjson"

ServiceQ = Annotated[str | None, Query(description="Only events of this service.")]
TypeQ = Annotated[
    list[str] | None, Query(description="Only these event types (repeatable, or comma-separated).")
]
AfterQ = Annotated[int | None, Query(ge=0, description="Only events after this log position.")]


def parse_types(types: list[str] | None) -> list[str] | None:
    if not types:
        return None
    names = [t.strip() for item in types for t in item.split(",") if t.strip()]
    unknown = [t for t in names if t not in EVENT_TYPES_BY_TAG]
    if unknown:
        raise Invalid(
            f"unknown event type {', '.join(map(repr, unknown))}; "
            f"known types: {', '.join(sorted(EVENT_TYPES_BY_TAG))}",
            code="invalid_request",
        )
    return names or None


def _matches(rec: RecordedEvent, service: str | None, since: datetime | None) -> bool:
    if service is not None and rec.event.service != service:
        return False
    return since is None or rec.occurred_at >= since


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERRORS)
    store = deps.store

    @router.get("", summary="Recorded events, oldest first; page with next_after, or the last N")
    async def list_events(
        service: ServiceQ = None,
        type: TypeQ = None,
        after: AfterQ = None,
        since: Annotated[
            datetime | None, Query(description="Only events that occurred at or after (ISO 8601).")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="Only events that occurred at or before (ISO 8601).")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="At most this many events per page.")] = 100,
        last: Annotated[
            int | None,
            Query(ge=1, le=1000, description="Instead of paging from `after`: the last N matching events."),
        ] = None,
    ) -> EventPageOut:
        types = parse_types(type)
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise Invalid(f"{name} needs a time zone, e.g. 2024-05-01T12:00:00Z", code="invalid_request")
        if last is not None and after is not None:
            raise Invalid("give either `after` (page forward) or `last` (the newest events), not both")
        floor = after or 0
        if since is not None:
            floor = max(floor, await store.position_at(since - CLOCK_MARGIN))
        end = (
            await store.position_at(until + CLOCK_MARGIN)
            if until is not None
            else await store.last_position()
        )
        query = _Query(deps, service, types, since, until)
        if last is not None:
            return EventPageOut(events=await query.newest(last, floor, end), next_after=end, has_more=False)
        events, cursor = await query.forward(limit, floor, end)
        return EventPageOut(events=events, next_after=cursor, has_more=cursor < end)

    @router.get(
        "/stream",
        summary="Follow events as they are recorded (NDJSON, one event per line; blank lines are heartbeats)",
        response_class=StreamingResponse,
        responses={200: {"content": {NDJSON: {"schema": {"type": "string"}}}, "description": "NDJSON"}},
    )
    async def stream_events(
        service: ServiceQ = None,
        type: TypeQ = None,
        after: Annotated[
            int | None, Query(ge=0, description="Start after this position (default: only new events).")
        ] = None,
    ) -> StreamingResponse:
        types = parse_types(type)
        start = after if after is not None else await store.last_position()
        body = _follow(deps, start, service, types)
        return StreamingResponse(body, media_type=NDJSON, headers={"Cache-Control": "no-store"})

    return router


async def _follow(
    deps: ApiDeps, start: int, service: str | None, types: list[str] | None
) -> AsyncIterator[bytes]:
    """Woken by the live projection (which tails the store), so followers cost no connection each."""
    loop = asyncio.get_running_loop()
    cursor = start
    last_sent = loop.time()
    wait = min(1.0, deps.heartbeat_seconds)
    while not deps.stopping.is_set():
        if deps.projection.position <= cursor:
            try:
                await deps.projection.wait_for(cursor + 1, wait)
            except ProjectionBehind:
                if loop.time() - last_sent >= deps.heartbeat_seconds:
                    last_sent = loop.time()
                    yield b"\n"
                continue
        batch = await deps.store.read_all(
            after=cursor, limit=BATCH, types=types, until=deps.projection.position
        )
        if not batch:
            cursor = deps.projection.position
            continue
        lines = []
        for rec in batch:
            cursor = rec.position
            if _matches(rec, service, None):
                lines.append(event_out(rec).model_dump_json() + "\n")
        if lines:
            last_sent = loop.time()
            yield "".join(lines).encode()


class _Query:
    """A filtered read of the log between two positions, by bounded scans."""

    def __init__(
        self, deps: ApiDeps, service: str | None, types: list[str] | None, since: datetime | None,
        until: datetime | None,
    ) -> None:  # fmt: skip
        self.store = deps.store
        self.service = service
        self.types = types
        self.since = since
        self.until = until

    async def _scan(self, after: int, end: int, limit: int) -> list[RecordedEvent]:
        return await self.store.read_all(
            after=after, limit=limit, types=self.types, until=end, before_time=self.until
        )

    async def forward(self, limit: int, cursor: int, end: int) -> tuple[list[EventOut], int]:
        """Up to ``limit`` matches after ``cursor``; returns them and where the next page starts."""
        events: list[EventOut] = []
        scanned = 0
        while len(events) < limit and scanned < MAX_SCAN and cursor < end:
            batch = await self._scan(cursor, end, BATCH)
            if not batch:
                return events, end
            for rec in batch:
                cursor = rec.position
                scanned += 1
                if _matches(rec, self.service, self.since):
                    events.append(event_out(rec))
                    if len(events) == limit:
                        return events, cursor
            if len(batch) < BATCH:
                return events, end
        return events, cursor

    async def newest(self, n: int, floor: int, end: int) -> list[EventOut]:
        """The last ``n`` matches in (floor, end], scanning windows backwards from ``end``."""
        found: list[EventOut] = []
        hi = end
        window = max(4 * n, 200)
        scanned = 0
        while hi > floor and len(found) < n and scanned < MAX_SCAN:
            lo = max(floor, hi - window)
            chunk: list[EventOut] = []
            cursor = lo
            while cursor < hi:
                batch = await self._scan(cursor, hi, BATCH)
                if not batch:
                    break
                scanned += len(batch)
                cursor = batch[-1].position
                chunk.extend(event_out(r) for r in batch if _matches(r, self.service, self.since))
                if len(batch) < BATCH:
                    break
            found = chunk + found
            hi = lo
            window *= 2
        return found[-n:]
