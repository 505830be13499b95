"""Audits: ``/v1/replay`` (the whole state as it was at a time or log position) and
``/v1/services/{name}/replicas/{id}/why`` (the causation chain of a replica, back to the user
action that caused it).

Replay folds the fleet projection from the log up to that moment (``Projection.as_of``, started
from the nearest audit checkpoint before it: ``libs/events/checkpoints.py``), so it shows what
the services knew then: services, versions, replicas with status and placement, the
autoscaler's target and its last decision.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from libs.events.causation import causation_chain
from libs.events.checkpoints import replay
from libs.events.envelope import RecordedEvent
from libs.events.types import replica_stream
from libs.fleet.projection import FLEET
from libs.fleet.state import FleetState

from .. import commands
from ..deps import ApiDeps
from ..errors import Invalid, NotFound
from ..models import EventOut, ServiceOut
from ..views import event_out, service_out
from .services import ERRORS

# Rows per read while replaying: large pages keep 100k events well under a second.
REPLAY_BATCH = 10_000


class ReplayOut(BaseModel):
    position: int = Field(description="Every event up to this log position is included; none after.")
    at: datetime | None = Field(description="When the last included event occurred (None: empty log).")
    head: int = Field(description="The log's current last position, for comparison.")
    services: list[ServiceOut]


class WhyOut(BaseModel):
    service: str
    replica_id: int
    history: list[EventOut] = Field(description="The replica's own events, oldest first.")
    chain: list[EventOut] = Field(
        description="From the replica's first event back through each cause to the root, newest first."
    )
    root_request_id: str | None = Field(
        description="The API request at the root of the chain (its causation id), if it came from one."
    )
    principal: str | None = Field(description="Who made that request (the API token's label).")
    inferred_after: int | None = Field(
        default=None,
        description="Set when chain[i] recorded no cause (a reconcile run by a periodic resync): "
        "chain[i + 1] is then the service's last change of intent before it, not a recorded cause.",
    )


async def replay_state(
    deps: ApiDeps, *, at: datetime | None, position: int | None
) -> tuple[FleetState, int, datetime | None]:
    """The fleet as of ``at`` or ``position``, the last position folded and its time."""
    store = deps.store
    if (at is None) == (position is None):
        raise Invalid("give exactly one of `at` (a time) or `position` (a log position)")
    if at is not None:
        if at.tzinfo is None:
            raise Invalid("`at` needs a time zone, e.g. 2024-05-01T12:00:00Z")
        state = (await replay(FLEET, store, time=at, batch_size=REPLAY_BATCH)).state
    else:
        assert position is not None
        state = (await replay(FLEET, store, position=position, batch_size=REPLAY_BATCH)).state
    last = state.position
    when = None
    if last:
        when = await store.pool.fetchval("SELECT occurred_at FROM stratus_events WHERE position = $1", last)
    return state, last, when


# What makes a reconciler add or replace replicas: the user's intent, the autoscaler's decisions,
# and the loss of a replica.
INTENT_TYPES = [
    "ServiceRequested", "ServiceUpdateRequested", "ScaleDecided", "Preempted", "ReplicaFailed",
    "ReplicaProcessExited", "ReplicaTerminationRequested",
]  # fmt: skip


async def _last_intent(deps: ApiDeps, service: str, before: int) -> uuid.UUID | None:
    found: uuid.UUID | None = await deps.store.pool.fetchval(
        "SELECT event_id FROM stratus_events WHERE position < $1 AND event_type = ANY($2::text[])"
        " AND payload->>'service' = $3 ORDER BY position DESC LIMIT 1",
        before, INTENT_TYPES, service,
    )  # fmt: skip
    return found


def _chain_out(chain: list[RecordedEvent]) -> tuple[list[EventOut], str | None, str | None]:
    outs = [event_out(r) for r in chain]
    if not chain:
        return outs, None, None
    root = chain[-1]
    request = str(root.causation_id) if root.causation_id is not None else None
    principal = getattr(root.event, "principal", None) or None
    return outs, request, principal


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(tags=["audit"], responses=ERRORS)

    @router.get("/v1/replay", summary="The whole state as it was at a time or log position (audits)")
    async def replay(
        at: Annotated[
            datetime | None,
            Query(description="The state after every event that occurred by then (ISO 8601)."),
        ] = None,
        position: Annotated[
            int | None, Query(ge=0, description="The state after every event up to this log position.")
        ] = None,
        service: Annotated[str | None, Query(description="Only this service.")] = None,
        all: Annotated[bool, Query(description="Include services terminated by then.")] = False,
    ) -> ReplayOut:
        state, last, when = await replay_state(deps, at=at, position=position)
        now = when.timestamp() if when is not None else 0.0
        if service is not None:
            svc = state.services.get(service)
            if svc is None:
                raise NotFound(f"service {service!r} did not exist at position {last}")
            picked = [svc]
        else:
            picked = [s for _, s in sorted(state.services.items()) if all or commands.is_listed(s)]
        return ReplayOut(
            position=last, at=when, head=await deps.store.last_position(),
            services=[service_out(s, now) for s in picked],
        )  # fmt: skip

    @router.get(
        "/v1/services/{name}/replicas/{replica_id}/why",
        summary="Why a replica exists: its events and the chain of causes back to the user action",
    )
    async def why(
        name: str, replica_id: Annotated[int, Path(ge=1, description="The replica's ID.")]
    ) -> WhyOut:
        history = await deps.store.read_stream(replica_stream(name, replica_id))
        if not history:
            svc = commands.find_service(deps.projection.state, name, live=False)
            commands.find_replica(svc, replica_id)  # raises the helpful 404
            raise NotFound(f"replica {replica_id} of {name!r} has no recorded events")
        chain = await causation_chain(deps.store, history[0].event_id)
        inferred_after = None
        if chain and chain[-1].causation_id is None:
            # A level-triggered reconcile run by a periodic resync records no cause: the replica
            # exists because of the last change of intent before it. Say so, and walk on from it.
            intent = await _last_intent(deps, name, chain[-1].position)
            if intent is not None:
                inferred_after = len(chain) - 1
                chain += await causation_chain(deps.store, intent)
        outs, request, principal = _chain_out(chain)
        return WhyOut(
            service=name, replica_id=replica_id, history=[event_out(r) for r in history], chain=outs,
            root_request_id=request, principal=principal, inferred_after=inferred_after,
        )  # fmt: skip

    return router
