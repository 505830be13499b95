"""Builders for unit tests: specs, and services folded from events that reach given statuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from libs.events.types import (
    EndpointAssigned,
    Event,
    Placement,
    Preempted,
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
    ServiceRequested,
    ServiceUpdateRequested,
)
from libs.fleet import ServiceState, fold_events

NAME = "svc"


def spec(
    replicas: int | None = 2,
    *,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    qps: float | None = None,
    use_spot: bool = False,
    base_od: int | None = None,
    dynamic: bool | None = None,
    placer: str | None = None,
    cloud: str | None = None,
    accelerators: dict[str, int] | None = None,
    any_of: list[dict[str, Any]] | None = None,
    initial_delay: int = 1200,
    overprovision: int | None = None,
) -> dict[str, Any]:
    lo = replicas if min_replicas is None else min_replicas
    hi = lo if max_replicas is None else max_replicas
    return {
        "service": {
            "readiness_path": "/health",
            "initial_delay_seconds": initial_delay,
            "readiness_timeout_seconds": 15,
            "post_data": None,
            "headers": None,
            "min_replicas": lo,
            "max_replicas": hi,
            "target_qps_per_replica": qps,
            "upscale_delay_seconds": 300,
            "downscale_delay_seconds": 1200,
            "num_overprovision": overprovision,
            "base_ondemand_fallback_replicas": base_od,
            "dynamic_ondemand_fallback": dynamic,
            "spot_placer": placer,
            "load_balancing_policy": "least_load",
            "ports": 8080,
        },
        "resources": {
            "use_spot": use_spot,
            "ports": [8080],
            "accelerators": accelerators,
            "cloud": cloud,
            "region": None,
            "zone": None,
            "any_of": any_of or [],
        },
    }


class R(msgspec.Struct, frozen=True):
    """A replica that reached ``status`` (one of SkyServe's names)."""

    rid: int
    status: str
    version: int = 1
    spot: bool = False
    zone: str = ""


def replica_events(r: R, name: str = NAME) -> list[Event]:
    placement = Placement(use_spot=r.spot, zone=r.zone)
    s = r.status
    ev: list[Event] = [
        ReplicaScheduled(service=name, replica_id=r.rid, version=r.version, placement=placement)
    ]
    if s == "PENDING":
        return ev
    ev.append(ReplicaProvisioningStarted(service=name, replica_id=r.rid))
    if s == "PROVISIONING":
        return ev
    if s == "FAILED_PROVISION":
        return [*ev, ReplicaLaunchFailed(service=name, replica_id=r.rid, kind="other", message="boom")]
    ev.append(
        ReplicaLaunched(service=name, replica_id=r.rid, instance_id=f"i-{r.rid}", url=f"http://r{r.rid}:8080")
    )
    if s == "STARTING":
        return ev
    if s in ("FAILED", "FAILED_CLEANUP"):
        ev.append(ReplicaProcessExited(service=name, replica_id=r.rid, exit_code=1))
        if s == "FAILED_CLEANUP":
            ev += [
                ReplicaTerminationRequested(service=name, replica_id=r.rid, reason="clean up"),
                ReplicaTerminated(service=name, replica_id=r.rid, cleanup_error="disk stuck"),
            ]
        return ev
    if s == "FAILED_INITIAL_DELAY":
        return [
            *ev,
            ReplicaFailed(service=name, replica_id=r.rid, status="FAILED_INITIAL_DELAY", reason="not ready"),
        ]
    ev.append(ReplicaReady(service=name, replica_id=r.rid, version=r.version))
    if s == "READY":
        return ev
    if s == "NOT_READY":
        return [*ev, ReplicaNotReady(service=name, replica_id=r.rid, reason="HTTP 500")]
    if s == "FAILED_PROBING":
        return [
            *ev,
            ReplicaFailed(service=name, replica_id=r.rid, status="FAILED_PROBING", reason="HTTP 500 180s"),
        ]
    if s == "PREEMPTED":
        return [*ev, Preempted(service=name, replica_id=r.rid)]
    if s == "SHUTTING_DOWN":
        return [*ev, ReplicaTerminationRequested(service=name, replica_id=r.rid, reason="scale down")]
    raise ValueError(s)


def build(
    the_spec: dict[str, Any] | None = None,
    replicas: Sequence[R] = (),
    *,
    updates: Sequence[tuple[int, str, dict[str, Any]]] = (),
    extra: Sequence[Event] = (),
    scale: ScaleDecided | None = None,
    endpoint: bool = True,
) -> ServiceState:
    """Service requested at t=0, updates at t=1.., replicas' events at t=10.. (one second
    apart, in replica order), then ``extra``."""
    events: list[tuple[Event, float]] = [(ServiceRequested(service=NAME, spec=the_spec or spec()), 0.0)]
    if endpoint:
        events.append((EndpointAssigned(service=NAME, endpoint="http://127.0.0.1:30001"), 0.5))
    for i, (version, mode, s) in enumerate(updates):
        mode_: Literal["rolling", "blue_green"] = "blue_green" if mode == "blue_green" else "rolling"
        events.append((ServiceUpdateRequested(service=NAME, version=version, spec=s, mode=mode_), 1.0 + i))
    if scale is not None:
        events.append((scale, 5.0))
    t = 10.0
    for r in replicas:
        for e in replica_events(r):
            events.append((e, t))
            t += 1.0
    for e in extra:
        events.append((e, t))
        t += 1.0
    return fold_events(events).services[NAME]
