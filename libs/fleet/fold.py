"""The pure fold of recorded events into a ``FleetState``.

``apply`` returns a new state and never mutates its input (copy-on-write per service);
``fold`` owns the dicts it creates and updates them in place, so rebuilding from a long log
costs one small struct copy per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from msgspec.structs import replace

from libs.events.types import (
    CloudsChecked,
    EndpointAssigned,
    Event,
    PlacementUnavailable,
    Preempted,
    PreemptionRequested,
    ProbeFailed,
    ReplicaDrained,
    ReplicaFailed,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    ReplicaNotReady,
    ReplicaProcessExited,
    ReplicaProvisioningStarted,
    ReplicaReady,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
    ServiceDownRequested,
    ServiceRequested,
    ServiceTerminated,
    ServiceUpdateRequested,
    TrafficSwitched,
)
from libs.spec import decode_recorded_spec

from .fold_replicas import ReplicaFolding
from .policy import service_policy
from .state import (
    CloudsState,
    FleetState,
    ReplicaState,
    ScaleInfo,
    ServiceState,
    VersionInfo,
)


def _version_info(version: int, spec: dict[str, Any], mode: str, at: float) -> VersionInfo:
    """The spec is decoded once, here (leniently: a recorded event never stops the fold)."""
    decoded = decode_recorded_spec(spec)
    return VersionInfo(
        version=version, spec=spec, mode=mode, requested_at=at, decoded=decoded,
        policy=service_policy(decoded),
    )  # fmt: skip


class RecordedLike(Protocol):
    """What the fold reads from a recorded event (``RecordedEvent`` fits)."""

    @property
    def event(self) -> Event: ...

    @property
    def occurred_at(self) -> datetime: ...

    @property
    def position(self) -> int: ...


def _ts(at: datetime | float) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)


class _Folder(ReplicaFolding):
    __slots__ = ()

    def apply(self, event: Event, at: float) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, at)

    # ----------------------------------------------------------------- service intent

    def service_requested(self, ev: ServiceRequested, at: float) -> None:
        old = self.services.get(ev.service)
        if old is not None and not old.terminated:
            return  # duplicate request for a live service
        v = ev.version
        info = _version_info(v, ev.spec, "rolling", at)
        self.services[ev.service] = ServiceState(
            name=ev.service,
            created_at=at,
            versions={v: info},
            latest_version=v,
            traffic_versions=(v,),
            replicas={},
            # Replica ids are never reused, even by a new service of the same name.
            next_replica_id=old.next_replica_id if old is not None else 1,
        )
        self.owned.add(ev.service)

    def update_requested(self, ev: ServiceUpdateRequested, at: float) -> None:
        svc = self.own(ev.service)
        if svc is None or svc.terminated or ev.version in svc.versions:
            return
        svc.versions[ev.version] = _version_info(ev.version, ev.spec, ev.mode, at)
        traffic = svc.traffic_versions
        if ev.mode == "rolling" and ev.version not in traffic:
            traffic = (*traffic, ev.version)
        self.services[svc.name] = replace(
            svc, latest_version=max(svc.latest_version, ev.version), traffic_versions=traffic
        )

    def down_requested(self, ev: ServiceDownRequested, at: float) -> None:
        svc = self.own(ev.service)
        if svc is None or svc.terminated:
            return
        self.services[svc.name] = replace(
            svc,
            down_requested_at=svc.down_requested_at if svc.down_requested_at is not None else at,
            purge=svc.purge or ev.purge,
        )

    def endpoint_assigned(self, ev: EndpointAssigned, at: float) -> None:
        svc = self.own(ev.service)
        if svc is not None:
            self.services[svc.name] = replace(svc, endpoint=ev.endpoint)

    def service_terminated(self, ev: ServiceTerminated, at: float) -> None:
        svc = self.own(ev.service)
        if svc is not None and not svc.terminated:
            self.services[svc.name] = replace(svc, terminated_at=at, terminated_reason=ev.reason)

    def scale_decided(self, ev: ScaleDecided, at: float) -> None:
        svc = self.own(ev.service)
        if svc is None:
            return
        scale = ScaleInfo(
            target=ev.target,
            spot=ev.spot,
            on_demand=ev.on_demand,
            reason=ev.reason,
            inputs=ev.inputs,
            decided_at=at,
        )
        self.services[svc.name] = replace(svc, scale=scale)

    def traffic_switched(self, ev: TrafficSwitched, at: float) -> None:
        svc = self.own(ev.service)
        if svc is not None:
            self.services[svc.name] = replace(svc, traffic_versions=tuple(ev.versions))

    # ----------------------------------------------------------------- replica life

    def replica_scheduled(self, ev: ReplicaScheduled, at: float) -> None:
        svc = self.own(ev.service)
        if svc is None or svc.terminated or ev.replica_id in svc.replicas:
            return
        svc.replicas[ev.replica_id] = ReplicaState(
            replica_id=ev.replica_id,
            version=ev.version,
            placement=ev.placement,
            placement_reason=ev.reason,
            scheduled_at=at,
        )
        if ev.replica_id >= svc.next_replica_id or svc.placement_wait:
            next_id = max(svc.next_replica_id, ev.replica_id + 1)
            self.services[svc.name] = replace(svc, next_replica_id=next_id, placement_wait="")

    def placement_unavailable(self, ev: PlacementUnavailable, at: float) -> None:
        svc = self.own(ev.service)
        if svc is not None and not svc.terminated:
            self.services[svc.name] = replace(svc, placement_wait=ev.reason)

    def clouds_checked(self, ev: CloudsChecked, at: float) -> None:
        self.clouds = CloudsState(
            enabled=tuple(ev.enabled), disabled=dict(ev.disabled), allowed=tuple(ev.allowed), checked_at=at
        )


_HANDLERS: dict[type[Event], Callable[[_Folder, Any, float], None]] = {
    ServiceRequested: _Folder.service_requested,
    ServiceUpdateRequested: _Folder.update_requested,
    ServiceDownRequested: _Folder.down_requested,
    EndpointAssigned: _Folder.endpoint_assigned,
    ServiceTerminated: _Folder.service_terminated,
    ScaleDecided: _Folder.scale_decided,
    TrafficSwitched: _Folder.traffic_switched,
    ReplicaScheduled: _Folder.replica_scheduled,
    ReplicaProvisioningStarted: _Folder.provisioning_started,
    ReplicaLaunched: _Folder.launched,
    ReplicaLaunchFailed: _Folder.launch_failed,
    Preempted: _Folder.preempted,
    PreemptionRequested: _Folder.preemption_requested,
    ReplicaTerminationRequested: _Folder.termination_requested,
    ReplicaDrained: _Folder.drained,
    ReplicaTerminated: _Folder.terminated,
    ReplicaProcessExited: _Folder.process_exited,
    ReplicaReady: _Folder.ready,
    ProbeFailed: _Folder.probe_failed,
    ReplicaNotReady: _Folder.not_ready,
    ReplicaFailed: _Folder.replica_failed,
    PlacementUnavailable: _Folder.placement_unavailable,
    CloudsChecked: _Folder.clouds_checked,
}


def apply_event(
    state: FleetState, event: Event, occurred_at: datetime | float, position: int = 0
) -> FleetState:
    """One event onto a state; the input state is left untouched."""
    folder = _Folder(dict(state.services), set(), state.clouds)
    folder.apply(event, _ts(occurred_at))
    return FleetState(services=folder.services, position=max(state.position, position), clouds=folder.clouds)


def apply(state: FleetState, record: RecordedLike) -> FleetState:
    """One recorded event (``RecordedEvent``) onto a state; the input state is left untouched."""
    return apply_event(state, record.event, record.occurred_at, record.position)


def fold(records: Iterable[RecordedLike], initial: FleetState | None = None) -> FleetState:
    """The state after ``records`` (in log order), starting from ``initial`` or empty."""
    start = initial if initial is not None else FleetState()
    folder = _Folder(dict(start.services), set(), start.clouds)
    position = start.position
    step = folder.apply
    for rec in records:
        step(rec.event, rec.occurred_at.timestamp())
        position = rec.position
    return FleetState(services=folder.services, position=position, clouds=folder.clouds)


def fold_events(events: Iterable[tuple[Event, float]], initial: FleetState | None = None) -> FleetState:
    """Like ``fold`` for bare ``(event, occurred_at)`` pairs (tests, replays)."""
    start = initial if initial is not None else FleetState()
    folder = _Folder(dict(start.services), set(), start.clouds)
    for event, at in events:
        folder.apply(event, at)
    return FleetState(services=folder.services, position=start.position, clouds=folder.clouds)
