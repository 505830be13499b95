"""``/v1/services/{name}/replicas``: list, get, terminate one, and (debug) preempt one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from .. import commands
from ..auth import Caller
from ..deps import ApiDeps
from ..models import AcceptedOut, ReplicaOut
from ..views import replica_out
from .services import ERRORS

ReplicaId = Annotated[int, Path(ge=1, description="The replica's ID, as `stratus status` shows it.")]


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/services/{name}/replicas", tags=["replicas"], responses=ERRORS)

    @router.get("", summary="A service's replicas")
    async def list_replicas(name: str) -> list[ReplicaOut]:
        svc = commands.find_service(deps.projection.state, name, live=False)
        return [replica_out(name, r) for _, r in sorted(svc.replicas.items())]

    @router.get("/{replica_id}", summary="One replica")
    async def get_replica(name: str, replica_id: ReplicaId) -> ReplicaOut:
        svc = commands.find_service(deps.projection.state, name, live=False)
        return replica_out(name, commands.find_replica(svc, replica_id))

    @router.delete(
        "/{replica_id}", status_code=202, summary="Terminate one replica (the scheduler replaces it)"
    )
    async def terminate_replica(
        name: str,
        replica_id: ReplicaId,
        caller: Caller,
        purge: Annotated[bool, Query(description="Forget it even if its cleanup fails.")] = False,
    ) -> AcceptedOut:
        return await commands.terminate_replica(deps, name, replica_id, purge, principal=caller.label)

    @router.post(
        "/{replica_id}/preempt",
        status_code=202,
        summary="Debug: ask the provider to act as if the cloud preempted this replica",
    )
    async def preempt_replica(name: str, replica_id: ReplicaId, caller: Caller) -> AcceptedOut:
        return await commands.request_preemption(deps, name, replica_id, principal=caller.label)

    return router
