"""What every part of the fold shares: the state it folds into, copy-on-write, failure and
zone bookkeeping (the handlers are in fold_replicas.py and fold.py)."""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from libs.events.types import (
    Placement,
)

from .state import (
    CloudsState,
    ReplicaState,
    ServiceState,
    ZoneEvent,
)
from .status import describe_failure

# Failed replicas kept for display once terminated (newest kept); cleanup failures always kept.
MAX_FAILED_KEPT = 10
MAX_ZONE_EVENTS = 32


# Launch failures that say nothing about the spec: retried with backoff, never give up
# (capacity and quota also block their location for a while: the placement fails over).
RETRYABLE_LAUNCH_FAILURES = frozenset({"capacity", "quota", "transient"})

NO_PLACEMENT = Placement()


class FolderBase:
    __slots__ = ("clouds", "owned", "services")

    def __init__(
        self, services: dict[str, ServiceState], owned: set[str], clouds: CloudsState | None = None
    ) -> None:
        self.services = services
        self.owned = owned
        self.clouds = clouds

    # ----------------------------------------------------------------- helpers

    def own(self, name: str) -> ServiceState | None:
        """The service, with dicts this folder may mutate (copied on first touch)."""
        svc = self.services.get(name)
        if svc is None or name in self.owned:
            return svc
        svc = replace(svc, replicas=dict(svc.replicas), versions=dict(svc.versions))
        self.services[name] = svc
        self.owned.add(name)
        return svc

    def replica(self, event: Any) -> tuple[ServiceState, ReplicaState] | None:
        svc = self.own(event.service)
        if svc is None:
            return None
        rep = svc.replicas.get(event.replica_id)
        return None if rep is None else (svc, rep)

    def count_failure(self, svc: ServiceState, rep: ReplicaState, at: float, blocking: bool) -> None:
        info = svc.versions.get(rep.version)
        if info is None:
            return
        svc.versions[rep.version] = replace(
            info,
            consecutive_failures=info.consecutive_failures + (1 if blocking else 0),
            retry_failures=info.retry_failures + 1,
            last_failure_at=at,
            failure_reason=describe_failure(rep),
        )

    def zone_event(
        self, svc: ServiceState, placement: Placement, kind: str, at: float, message: str = ""
    ) -> None:
        ev = ZoneEvent(
            cloud=placement.cloud,
            region=placement.region,
            zone=placement.zone,
            kind=kind,
            use_spot=placement.use_spot,
            at=at,
            instance_type=placement.instance_type,
            message=message[:200],
        )
        events = (*svc.zone_events, ev)[-MAX_ZONE_EVENTS:]
        self.services[svc.name] = replace(svc, zone_events=events)
