"""The scheduler's actions (plain data) and the events that record them."""

from __future__ import annotations

from typing import TypeAlias

import msgspec

from libs.events.types import (
    Event,
    Placement,
    PlacementUnavailable,
    ReplicaScheduled,
    ReplicaTerminationRequested,
    ServiceTerminated,
    TrafficSwitched,
)


class ScheduleReplica(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    replica_id: int
    version: int
    placement: Placement
    reason: str = ""


class WaitForPlacement(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Nothing can be placed now: recorded once per distinct reason (PlacementUnavailable)."""

    version: int
    use_spot: bool
    reason: str
    retry_at: float = 0.0


class RequestTermination(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    replica_id: int
    reason: str
    drain_seconds: float = 0.0
    purge: bool = False


class MarkServiceTerminated(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    reason: str


class SetTrafficVersions(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    versions: tuple[int, ...]
    reason: str = ""


Action: TypeAlias = (
    ScheduleReplica | RequestTermination | MarkServiceTerminated | SetTrafficVersions | WaitForPlacement
)


def to_event(service: str, action: Action) -> Event:
    """The event that records ``action``."""
    if isinstance(action, ScheduleReplica):
        return ReplicaScheduled(
            service=service,
            replica_id=action.replica_id,
            version=action.version,
            placement=action.placement,
            reason=action.reason,
        )
    if isinstance(action, WaitForPlacement):
        return PlacementUnavailable(
            service=service,
            version=action.version,
            use_spot=action.use_spot,
            reason=action.reason,
            retry_at=action.retry_at or 0.0,
        )
    if isinstance(action, RequestTermination):
        return ReplicaTerminationRequested(
            service=service,
            replica_id=action.replica_id,
            reason=action.reason,
            drain_seconds=action.drain_seconds,
            purge=action.purge,
        )
    if isinstance(action, MarkServiceTerminated):
        return ServiceTerminated(service=service, reason=action.reason)
    return TrafficSwitched(service=service, versions=list(action.versions), reason=action.reason)
