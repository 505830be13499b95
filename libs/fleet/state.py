"""The fleet projection: frozen structs holding the facts recorded about services and replicas.

Times are unix seconds (floats). Nothing here is derived: statuses come from ``status.py``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from libs.events.types import Placement
from libs.spec import ServiceSpec, decode_recorded_spec

from .policy import ServicePolicy


class LaunchFailure(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    message: str = ""
    at: float = 0.0


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """A ``ReplicaFailed`` verdict (prober / provisioner)."""

    status: str
    reason: str = ""
    at: float = 0.0


class ProcessExit(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int | None = None
    reason: str = ""  # the provider's sentence, no workload output
    log_tail: str = ""  # from events recorded before ``reason`` existed
    at: float = 0.0
    # Exited after we asked it to stop: expected, not a failure.
    expected: bool = False


class TerminationRequest(msgspec.Struct, frozen=True, kw_only=True):
    reason: str = ""
    drain_seconds: float = 0.0
    purge: bool = False
    at: float = 0.0


class ReplicaState(msgspec.Struct, frozen=True, kw_only=True):
    replica_id: int
    version: int = 1
    placement: Placement = Placement()
    placement_reason: str = ""  # why there (ReplicaScheduled.reason: price, offers, blocked locations)
    url: str = ""
    instance_id: str = ""
    scheduled_at: float | None = None
    provisioning_at: float | None = None
    launched_at: float | None = None
    launch_failed: LaunchFailure | None = None
    ready_at: float | None = None  # first READY
    last_ready_at: float | None = None
    not_ready_at: float | None = None  # set while NOT_READY (cleared by ReplicaReady)
    not_ready_reason: str = ""
    probe_failures: int = 0
    last_probe_failure: str = ""
    failed: Failure | None = None
    preempted_at: float | None = None
    # ``stratus debug preempt`` asked for it (PreemptionRequested): the provisioner acts on it once.
    preemption_requested_at: float | None = None
    exited: ProcessExit | None = None
    termination: TerminationRequest | None = None
    # A router saw its in-flight requests finish after the termination request (ReplicaDrained).
    drained_at: float | None = None
    terminated_at: float | None = None
    cleanup_error: str = ""

    @property
    def is_ready(self) -> bool:
        return self.ready_at is not None and self.not_ready_at is None

    @property
    def is_spot(self) -> bool:
        return self.placement.use_spot


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    spec: dict[str, Any] = {}
    mode: str = "rolling"
    requested_at: float = 0.0
    # ``spec`` decoded once by the fold (None only in a VersionInfo built by hand: see ``typed``).
    decoded: ServiceSpec | None = None
    policy: ServicePolicy = ServicePolicy()
    first_ready_at: float | None = None
    # Failures that count toward giving up (not preemptions, not capacity), reset by READY.
    consecutive_failures: int = 0
    # Every failure including capacity/transient ones, reset by READY: drives retry backoff.
    retry_failures: int = 0
    last_failure_at: float | None = None
    failure_reason: str = ""

    @property
    def typed(self) -> ServiceSpec:
        """The typed spec every reader uses (the provisioner's launch task, the policies)."""
        return self.decoded if self.decoded is not None else decode_recorded_spec(self.spec)


class ScaleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The last ``ScaleDecided``."""

    target: int
    spot: int = 0
    on_demand: int = 0
    reason: str = ""
    inputs: dict[str, Any] = {}
    decided_at: float = 0.0


class ZoneEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A preemption, capacity or quota failure in a location: the placement blocks (capacity,
    quota) or avoids (preemption, with the spot placer) it for a while."""

    cloud: str
    region: str
    zone: str
    kind: str  # "preempted" | "capacity" | "quota"
    use_spot: bool
    at: float
    instance_type: str = ""
    message: str = ""


class CloudsState(msgspec.Struct, frozen=True, kw_only=True):
    """The last ``CloudsChecked``: clouds the provisioner can launch on, and why not the others."""

    enabled: tuple[str, ...] = ()
    disabled: dict[str, str] = {}
    allowed: tuple[str, ...] = ()  # empty: all
    checked_at: float = 0.0

    @property
    def usable(self) -> tuple[str, ...]:
        """Enabled and allowed."""
        allowed = {c.lower() for c in self.allowed}
        return tuple(c.lower() for c in self.enabled if not allowed or c.lower() in allowed)


class ServiceState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    created_at: float = 0.0
    versions: dict[int, VersionInfo] = {}
    latest_version: int = 1
    # Versions whose READY replicas get traffic (rolling adds; blue-green switches).
    traffic_versions: tuple[int, ...] = (1,)
    endpoint: str | None = None
    down_requested_at: float | None = None
    purge: bool = False
    terminated_at: float | None = None
    terminated_reason: str = ""
    scale: ScaleInfo | None = None
    replicas: dict[int, ReplicaState] = {}
    next_replica_id: int = 1
    zone_events: tuple[ZoneEvent, ...] = ()
    # Why the scheduler could not place a replica (PlacementUnavailable); "" once one is scheduled.
    placement_wait: str = ""

    @property
    def latest(self) -> VersionInfo:
        info = self.versions.get(self.latest_version)
        return info if info is not None else VersionInfo(version=self.latest_version)

    @property
    def policy(self) -> ServicePolicy:
        return self.latest.policy

    @property
    def down_requested(self) -> bool:
        return self.down_requested_at is not None

    @property
    def terminated(self) -> bool:
        return self.terminated_at is not None

    @property
    def consecutive_failures(self) -> int:
        """Of the latest version."""
        return self.latest.consecutive_failures

    @property
    def failure_reason(self) -> str:
        return self.latest.failure_reason


class FleetState(msgspec.Struct, frozen=True, kw_only=True):
    services: dict[str, ServiceState] = {}
    position: int = 0  # of the last event applied
    clouds: CloudsState | None = None  # None: no CloudsChecked recorded yet
