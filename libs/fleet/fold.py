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
    Placement,
    PlacementUnavailable,
    Preempted,
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

from .policy import service_policy
from .state import (
    CloudsState,
    Failure,
    FleetState,
    LaunchFailure,
    ProcessExit,
    ReplicaState,
    ScaleInfo,
    ServiceState,
    TerminationRequest,
    VersionInfo,
    ZoneEvent,
)
from .status import PREEMPTED, REPLACED_STATUSES, TERMINATED, describe_failure, replica_status

# Failed replicas kept for display once terminated (newest kept); cleanup failures always kept.
MAX_FAILED_KEPT = 10
MAX_ZONE_EVENTS = 32


def _version_info(version: int, spec: dict[str, Any], mode: str, at: float) -> VersionInfo:
    """The spec is decoded once, here (leniently: a recorded event never stops the fold)."""
    decoded = decode_recorded_spec(spec)
    return VersionInfo(
        version=version, spec=spec, mode=mode, requested_at=at, decoded=decoded,
        policy=service_policy(decoded),
    )  # fmt: skip


# Launch failures that say nothing about the spec: retried with backoff, never give up
# (capacity and quota also block their location for a while: the placement fails over).
RETRYABLE_LAUNCH_FAILURES = frozenset({"capacity", "quota", "transient"})

_NO_PLACEMENT = Placement()


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


class _Folder:
    __slots__ = ("clouds", "owned", "services")

    def __init__(
        self, services: dict[str, ServiceState], owned: set[str], clouds: CloudsState | None = None
    ) -> None:
        self.services = services
        self.owned = owned
        self.clouds = clouds

    def apply(self, event: Event, at: float) -> None:
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, at)

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

    def provisioning_started(self, ev: ReplicaProvisioningStarted, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].provisioning_at is not None:
            return
        svc, rep = found
        placement = rep.placement if ev.placement == _NO_PLACEMENT else ev.placement
        svc.replicas[rep.replica_id] = replace(rep, provisioning_at=at, placement=placement)

    def launched(self, ev: ReplicaLaunched, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        placement = rep.placement if ev.placement == _NO_PLACEMENT else ev.placement
        svc.replicas[rep.replica_id] = replace(
            rep, launched_at=at, instance_id=ev.instance_id, url=ev.url, placement=placement
        )

    def launch_failed(self, ev: ReplicaLaunchFailed, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        placement = rep.placement if ev.placement == _NO_PLACEMENT else ev.placement
        if ev.kind in ("capacity", "quota"):
            self.zone_event(svc, placement, ev.kind, at, ev.message)
        if rep.launched_at is not None or rep.termination is not None:
            return  # a cancelled launch is not a failure
        if replica_status(rep) in REPLACED_STATUSES:
            return
        rep = replace(rep, launch_failed=LaunchFailure(kind=ev.kind, message=ev.message, at=at))
        svc.replicas[rep.replica_id] = rep
        self.count_failure(svc, rep, at, blocking=ev.kind not in RETRYABLE_LAUNCH_FAILURES)

    def preempted(self, ev: Preempted, at: float) -> None:
        svc = self.own(ev.service)
        if svc is None:
            return
        rep = svc.replicas.get(ev.replica_id)
        placement = ev.placement
        if placement == _NO_PLACEMENT and rep is not None:
            placement = rep.placement
        self.zone_event(svc, placement, "preempted", at)
        if rep is None or rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return
        svc.replicas[rep.replica_id] = replace(rep, preempted_at=at)

    def termination_requested(self, ev: ReplicaTerminationRequested, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].termination is not None:
            return
        svc, rep = found
        req = TerminationRequest(reason=ev.reason, drain_seconds=ev.drain_seconds, purge=ev.purge, at=at)
        svc.replicas[rep.replica_id] = replace(rep, termination=req)

    def drained(self, ev: ReplicaDrained, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.termination is None or rep.drained_at is not None or rep.terminated_at is not None:
            return
        svc.replicas[rep.replica_id] = replace(rep, drained_at=at)

    def terminated(self, ev: ReplicaTerminated, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        rep = replace(rep, terminated_at=at, cleanup_error=ev.cleanup_error)
        status = replica_status(rep)
        if status in (TERMINATED, PREEMPTED):
            del svc.replicas[rep.replica_id]
            return
        svc.replicas[rep.replica_id] = rep
        reps = svc.replicas.values()
        done = [r.replica_id for r in reps if r.terminated_at is not None and not r.cleanup_error]
        if len(done) > MAX_FAILED_KEPT:
            for rid in sorted(done)[: len(done) - MAX_FAILED_KEPT]:
                del svc.replicas[rid]

    def process_exited(self, ev: ReplicaProcessExited, at: float) -> None:
        found = self.replica(ev)
        if found is None or found[1].exited is not None:
            return
        svc, rep = found
        expected = rep.termination is not None or rep.terminated_at is not None
        was_failed = replica_status(rep) in REPLACED_STATUSES
        exit_ = ProcessExit(
            exit_code=ev.exit_code, reason=ev.reason, log_tail=ev.log_tail, at=at, expected=expected
        )
        rep = replace(rep, exited=exit_)
        svc.replicas[rep.replica_id] = rep
        if not expected and not was_failed:
            self.count_failure(svc, rep, at, blocking=True)

    # ----------------------------------------------------------------- probes

    def ready(self, ev: ReplicaReady, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return
        svc.replicas[rep.replica_id] = replace(
            rep,
            ready_at=rep.ready_at if rep.ready_at is not None else at,
            last_ready_at=at,
            not_ready_at=None,
            not_ready_reason="",
            url=rep.url or ev.url,
        )
        info = svc.versions.get(rep.version)
        if info is not None:
            svc.versions[rep.version] = replace(
                info,
                first_ready_at=info.first_ready_at if info.first_ready_at is not None else at,
                consecutive_failures=0,
                retry_failures=0,
            )

    def probe_failed(self, ev: ProbeFailed, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        svc.replicas[rep.replica_id] = replace(
            rep, probe_failures=rep.probe_failures + 1, last_probe_failure=ev.reason
        )

    def not_ready(self, ev: ReplicaNotReady, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.ready_at is None or rep.not_ready_at is not None or rep.termination is not None:
            return
        svc.replicas[rep.replica_id] = replace(rep, not_ready_at=at, not_ready_reason=ev.reason)

    def replica_failed(self, ev: ReplicaFailed, at: float) -> None:
        found = self.replica(ev)
        if found is None:
            return
        svc, rep = found
        if rep.termination is not None or replica_status(rep) in REPLACED_STATUSES:
            return  # draining replicas stop answering; the first failure wins
        rep = replace(rep, failed=Failure(status=ev.status, reason=ev.reason, at=at))
        svc.replicas[rep.replica_id] = rep
        self.count_failure(svc, rep, at, blocking=True)


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
