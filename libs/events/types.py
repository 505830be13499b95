"""Event types: frozen msgspec Structs with stable string tags.

Every event is named in the past tense and carries only plain data. The tag (``type``
column in the store, ``Stratus-Type`` header on the bus) is the class name, written out
explicitly so that renaming a class never renames stored events. New fields get defaults;
a breaking change gets a new type or an upcaster (see ``upcasting.py``).

Streams: ``service-<name>`` holds a service's life (requests, scale decisions, endpoint,
termination); ``replica-<service>-<id>`` holds one replica's life. Every event names its
``service`` so that a consumer can key its reconcile on it without reading the stream id.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event. ``service`` is the key controllers reconcile on."""

    service: str


# --------------------------------------------------------------------------- service intent (api)


class ServiceRequested(Event, frozen=True, tag="ServiceRequested"):
    """A user asked for a new service. ``spec`` is the normalized spec (see libs.spec)."""

    version: int = 1
    spec: dict[str, Any] = {}
    # Names of env vars whose values were moved to the secret store (never in the log).
    secret_envs: list[str] = []
    # Who asked (the API token's ``name#id``; never the token); "" for events from before auth.
    principal: str = ""


class ServiceUpdateRequested(Event, frozen=True, tag="ServiceUpdateRequested"):
    version: int
    spec: dict[str, Any] = {}
    mode: Literal["rolling", "blue_green"] = "rolling"
    secret_envs: list[str] = []
    principal: str = ""


class ServiceDownRequested(Event, frozen=True, tag="ServiceDownRequested"):
    purge: bool = False
    principal: str = ""


# --------------------------------------------------------------------------- router


class EndpointAssigned(Event, frozen=True, tag="EndpointAssigned"):
    endpoint: str  # "http://127.0.0.1:30001"
    router_id: str = ""


class EndpointKeysChanged(Event, frozen=True, tag="EndpointKeysChanged"):
    """The service's endpoint API keys changed (one created or revoked): routers reload them.
    Carries key ids only; the keys' hashes live in the secrets tables (libs/secrets/endpoint.py)."""

    key_ids: list[str] = []  # the valid keys after the change
    principal: str = ""  # who made the change (audit)


class QpsSampled(Event, frozen=True, tag="QpsSampled"):
    """Requests a router saw for a service in one window (several routers add up)."""

    router_id: str
    window_start: float  # unix seconds
    window_seconds: float
    requests: int
    # Requests held while the service had no ready replica (scale-from-zero signal).
    queued: int = 0


# --------------------------------------------------------------------------- scheduler


class Placement(msgspec.Struct, frozen=True, kw_only=True):
    cloud: str = "local"
    region: str = "local"
    zone: str = ""
    instance_type: str = ""
    accelerators: dict[str, float] = {}
    use_spot: bool = False
    price_per_hour: float = 0.0
    disk_size: int | None = None  # GB, from resources.disk_size (None: the provider's default)


class ReplicaScheduled(Event, frozen=True, tag="ReplicaScheduled"):
    replica_id: int
    version: int = 1
    placement: Placement = Placement()
    reason: str = ""  # why this placement (price, offers considered, locations blocked)


class PlacementUnavailable(Event, frozen=True, tag="PlacementUnavailable"):
    """The scheduler could not place a replica of ``version``: why, and when it retries by itself
    (``retry_at``, unix seconds; 0: when something changes). Recorded when the reason changes."""

    version: int = 1
    use_spot: bool = False
    reason: str = ""
    retry_at: float = 0.0


class ReplicaTerminationRequested(Event, frozen=True, tag="ReplicaTerminationRequested"):
    replica_id: int
    reason: str = ""
    # Seconds the router lets in-flight requests finish before the instance goes away.
    drain_seconds: float = 0.0
    purge: bool = False
    principal: str = ""  # "" when the scheduler asked (scale-down, replacement)


class ReplicaDrained(Event, frozen=True, tag="ReplicaDrained"):
    """A router stopped sending new requests to a replica asked to terminate and saw its
    in-flight requests finish: the provisioner may terminate it before the drain deadline."""

    replica_id: int
    router_id: str = ""
    waited_seconds: float = 0.0


class ServiceTerminated(Event, frozen=True, tag="ServiceTerminated"):
    reason: str = ""


class TrafficSwitched(Event, frozen=True, tag="TrafficSwitched"):
    """The versions whose READY replicas receive traffic (blue-green switch)."""

    versions: list[int]
    reason: str = ""


# --------------------------------------------------------------------------- provisioner


class ReplicaProvisioningStarted(Event, frozen=True, tag="ReplicaProvisioningStarted"):
    """The provisioner began launching a scheduled replica (PENDING -> PROVISIONING).

    Also the claim of one provisioner instance (``claimed_by``, its lease's holder): appended
    with an expected stream version, so only one instance launches a replica."""

    replica_id: int
    placement: Placement = Placement()
    claimed_by: str = ""  # empty: recorded before claims existed


class ReplicaLaunched(Event, frozen=True, tag="ReplicaLaunched"):
    replica_id: int
    instance_id: str
    # Where the router and prober reach the replica: "http://10.200.3.2:8080".
    url: str
    placement: Placement = Placement()


class ReplicaLaunchFailed(Event, frozen=True, tag="ReplicaLaunchFailed"):
    replica_id: int
    kind: Literal["capacity", "quota", "auth", "transient", "other"] = "other"
    message: str = ""
    placement: Placement = Placement()


class Preempted(Event, frozen=True, tag="Preempted"):
    replica_id: int
    instance_id: str = ""
    placement: Placement = Placement()


class ReplicaTerminated(Event, frozen=True, tag="ReplicaTerminated"):
    replica_id: int
    instance_id: str = ""
    # Non-empty when the cleanup itself failed (FAILED_CLEANUP).
    cleanup_error: str = ""


class ReplicaProcessExited(Event, frozen=True, tag="ReplicaProcessExited"):
    """The replica's workload ended on its own (not asked to): the provisioner saw it."""

    replica_id: int
    instance_id: str = ""
    exit_code: int | None = None
    # The provider's short sentence ("run exited with code 3"); never workload output, which stays
    # in the replica's log (``stratus logs SERVICE REPLICA``), out of the append-only event log.
    reason: str = ""
    log_tail: str = ""  # only in events recorded before ``reason``; no longer written


# --------------------------------------------------------------------------- prober


class ReplicaReady(Event, frozen=True, tag="ReplicaReady"):
    replica_id: int
    url: str = ""
    version: int = 1


class ProbeFailed(Event, frozen=True, tag="ProbeFailed"):
    """One failed probe of a replica that was READY (each one is recorded for audits)."""

    replica_id: int
    reason: str = ""
    consecutive_failures: int = 1


class ReplicaNotReady(Event, frozen=True, tag="ReplicaNotReady"):
    replica_id: int
    reason: str = ""


class ReplicaFailed(Event, frozen=True, tag="ReplicaFailed"):
    replica_id: int
    status: Literal[
        "FAILED", "FAILED_INITIAL_DELAY", "FAILED_PROBING", "FAILED_PROVISION", "FAILED_CLEANUP"
    ] = "FAILED"
    reason: str = ""


# --------------------------------------------------------------------------- autoscaler


class ScaleDecided(Event, frozen=True, tag="ScaleDecided"):
    target: int
    spot: int = 0
    on_demand: int = 0
    reason: str = ""
    inputs: dict[str, Any] = {}
    # The decision tick (unix seconds; 0 in events recorded before it) and the hysteresis streak
    # left after it (kept only by an on-demand fallback change): with ScaleEvaluated, the
    # autoscaler's state is a fold of the log (services/autoscaler/fold.py).
    at: float = 0.0
    candidate_target: int | None = None
    candidate_since: float | None = None


class ScaleEvaluated(Event, frozen=True, tag="ScaleEvaluated"):
    """A decision tick that changed the autoscaler's state without moving the target: a
    hysteresis streak began or ended, or a new version's re-target or a wake-up request was
    consumed. Carries the whole state after the tick (all but the QPS samples, which are their
    own events), so the autoscaler rebuilds from the log; recorded at most once per decision
    interval per service, only when something changed."""

    at: float | None = None  # the tick; None: carried over from the pre-log table, not evaluated since
    target: int | None = None
    spot: int = 0
    on_demand: int = 0
    decided_at: float | None = None
    candidate_target: int | None = None  # the wanted target that began the streak (its side counts)
    candidate_since: float | None = None
    wake_requested_at: float | None = None
    retarget: bool = False
    reason: str = ""
    inputs: dict[str, Any] = {}


class ScaleFromZeroRequested(Event, frozen=True, tag="ScaleFromZeroRequested"):
    """A router holds a request for a service that has no ready replica."""

    router_id: str = ""


# --------------------------------------------------------------------------- clouds (provisioner)


class CloudsChecked(Event, frozen=True, tag="CloudsChecked"):
    """The provisioner's view of which clouds it can launch on (``stratus check``).

    Appended to the ``clouds`` stream (``service`` is "") at start-up and whenever the answer
    changes. ``enabled`` are usable now; ``disabled`` maps a cloud to why not and what to do.
    ``allowed`` is ``allowed_clouds`` from ``$STRATUS_HOME/config.yaml`` (empty: all).
    """

    enabled: list[str] = []
    disabled: dict[str, str] = {}
    allowed: list[str] = []
    provisioner_id: str = ""


CLOUDS_STREAM = "clouds"


# --------------------------------------------------------------------------- API access (api)


class ApiTokenCreated(Event, frozen=True, tag="ApiTokenCreated"):
    """An API token was created (stream ``auth``, ``service`` ""). Never carries the token."""

    token_id: int
    name: str
    role: str
    principal: str = ""  # who created it


class ApiTokenRevoked(Event, frozen=True, tag="ApiTokenRevoked"):
    """An API token was revoked (stream ``auth``, ``service`` "")."""

    token_id: int
    name: str
    role: str
    principal: str = ""  # who revoked it


AUTH_STREAM = "auth"


class DeadLetterRetryRequested(Event, frozen=True, tag="DeadLetterRetryRequested"):
    """An operator asked for dead letters to be retried (stream ``dead-letters``, ``service`` "")."""

    dead_letter_ids: list[int] = []  # those (re)opened for retry
    consumer: str = ""  # `retry --all` narrowed to one consumer ("" none)
    principal: str = ""  # who asked


class DeadLetterRetried(Event, frozen=True, tag="DeadLetterRetried"):
    """A consumer handled a dead letter again: ``outcome`` as ``stratus dead-letters list`` shows."""

    dead_letter_id: int
    consumer: str
    position: int | None = None
    outcome: str = ""
    principal: str = ""  # who asked for the retry


# --------------------------------------------------------------------------- debug


class PreemptionRequested(Event, frozen=True, tag="PreemptionRequested"):
    """``stratus debug preempt``: ask the provider to behave as if the cloud preempted."""

    replica_id: int
    principal: str = ""


class PreemptionStarted(Event, frozen=True, tag="PreemptionStarted"):
    """A provisioner acts on a ``PreemptionRequested``: its claim (``claimed_by``, its lease's
    holder), appended with an expected stream version so one instance acts; a claim whose
    holder died is taken over by the next instance that reconciles the replica."""

    replica_id: int
    instance_id: str = ""
    claimed_by: str = ""


ALL_EVENT_TYPES: tuple[type[Event], ...] = (
    ServiceRequested,
    ServiceUpdateRequested,
    ServiceDownRequested,
    EndpointAssigned,
    EndpointKeysChanged,
    QpsSampled,
    ReplicaScheduled,
    ReplicaTerminationRequested,
    ReplicaDrained,
    ServiceTerminated,
    TrafficSwitched,
    ReplicaProvisioningStarted,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    Preempted,
    ReplicaTerminated,
    ReplicaProcessExited,
    ReplicaReady,
    ProbeFailed,
    ReplicaNotReady,
    ReplicaFailed,
    ScaleDecided,
    ScaleEvaluated,
    ScaleFromZeroRequested,
    PreemptionRequested,
    PreemptionStarted,
    CloudsChecked,
    PlacementUnavailable,
    ApiTokenCreated,
    ApiTokenRevoked,
    DeadLetterRetryRequested,
    DeadLetterRetried,
)

EVENT_TYPES_BY_TAG: dict[str, type[Event]] = {str(t.__struct_config__.tag): t for t in ALL_EVENT_TYPES}


def event_tag(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def service_stream(service: str) -> str:
    return f"service-{service}"


def replica_stream(service: str, replica_id: int) -> str:
    return f"replica-{service}-{replica_id}"
