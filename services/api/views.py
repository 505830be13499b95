"""From the fleet projection to the API's response models (pure: ``now`` is passed in)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from libs.events.codec import to_builtins
from libs.events.envelope import RecordedEvent
from libs.events.types import Placement
from libs.fleet import (
    ALIVE_STATUSES,
    ReplicaState,
    ServiceState,
    describe_failure,
    desired_target,
    replica_status,
    service_status,
)

from .models import AutoscalingOut, EventOut, ReplicaOut, ServiceOut, UpdateMode

READY = "READY"
_CLOUD_NAMES = {"aws": "AWS", "gcp": "GCP", "azure": "Azure", "local": "Local", "kubernetes": "Kubernetes"}


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _count(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def resources_text(placement: Placement, num_nodes: int = 1) -> str:
    """SkyServe's RESOURCES column: ``1x GCP([Spot]{'L4': 1})``, ``2x AWS(g5.xlarge, {'A10G': 1})``
    (the count is the replica's nodes)."""
    cloud = _CLOUD_NAMES.get(placement.cloud.lower(), placement.cloud or "-")
    parts = []
    if placement.instance_type:
        parts.append(placement.instance_type)
    if placement.accelerators:
        parts.append(repr({k: _count(v) for k, v in placement.accelerators.items()}))
    spot = "[Spot]" if placement.use_spot else ""
    return f"{num_nodes}x {cloud}({spot}{', '.join(parts)})"


def replica_reason(rep: ReplicaState) -> str | None:
    failure = describe_failure(rep)
    if failure:
        return failure
    if rep.termination is not None and rep.termination.reason:
        return rep.termination.reason
    if rep.not_ready_at is not None and rep.not_ready_reason:
        return rep.not_ready_reason
    if rep.last_probe_failure and rep.ready_at is None:
        return f"last probe: {rep.last_probe_failure}"
    return None


def replica_out(service: str, rep: ReplicaState, num_nodes: int = 1) -> ReplicaOut:
    p = rep.placement
    host = urlsplit(rep.url).hostname if rep.url else None
    launched = rep.launched_at if rep.launched_at is not None else rep.provisioning_at
    return ReplicaOut(
        service=service,
        replica_id=rep.replica_id,
        version=rep.version,
        status=replica_status(rep),
        status_reason=replica_reason(rep),
        url=rep.url or None,
        instance_id=rep.instance_id or None,
        ip=host,
        cloud=p.cloud or None,
        region=p.region or None,
        zone=p.zone or None,
        instance_type=p.instance_type or None,
        accelerators=dict(p.accelerators),
        use_spot=p.use_spot,
        price_per_hour=p.price_per_hour or None,
        resources=resources_text(p, num_nodes),
        launched_at=_dt(launched),
        placement_reason=rep.placement_reason or None,
    )


def _num_nodes(svc: ServiceState, version: int) -> int:
    info = svc.versions.get(version)
    return info.typed.num_nodes if info is not None else 1


def _update_mode(svc: ServiceState) -> UpdateMode | None:
    if len(svc.versions) < 2:
        return None
    mode = svc.latest.mode
    return "blue_green" if mode == "blue_green" else "rolling"


def service_out(svc: ServiceState, now: float) -> ServiceOut:
    status, reason = service_status(svc)
    replicas = sorted(svc.replicas.values(), key=lambda r: r.replica_id)
    statuses = [replica_status(r) for r in replicas]
    alive = [r for r, s in zip(replicas, statuses, strict=True) if s in ALIVE_STATUSES]
    ready = sum(1 for s in statuses if s == READY)
    versions = sorted({r.version for r in alive} | {svc.latest_version})
    first_ready = [v.first_ready_at for v in svc.versions.values() if v.first_ready_at is not None]
    ready_since = min(first_ready) if first_ready and not svc.terminated and status == READY else None
    pol = svc.policy.autoscale
    scale = svc.scale
    autoscaling = AutoscalingOut(
        policy="autoscaling" if pol.autoscales else "fixed",
        min_replicas=pol.min_replicas,
        max_replicas=pol.max_replicas,
        target_qps_per_replica=pol.target_qps_per_replica,
        target_qps_per_accelerator=dict(pol.target_qps_per_accelerator) or None,
        upscale_delay_seconds=_count(pol.upscale_delay_seconds) if pol.autoscales else None,
        downscale_delay_seconds=_count(pol.downscale_delay_seconds) if pol.autoscales else None,
        num_overprovision=pol.num_overprovision,
        base_ondemand_fallback_replicas=pol.base_ondemand_fallback_replicas,
        dynamic_ondemand_fallback=pol.dynamic_ondemand_fallback,
        current_replicas=len(alive),
        target_replicas=desired_target(svc) if not svc.terminated and not svc.down_requested else 0,
        last_decision_reason=scale.reason or None if scale is not None else None,
        last_decision_at=_dt(scale.decided_at) if scale is not None else None,
    )
    return ServiceOut(
        name=svc.name,
        status=status,
        status_reason=reason or None,
        version=svc.latest_version,
        versions=versions,
        endpoint=svc.endpoint,
        created_at=_dt(svc.created_at),
        ready_since=_dt(ready_since),
        uptime_seconds=max(0.0, now - ready_since) if ready_since is not None else None,
        replicas_ready=ready,
        replicas_total=len(alive),
        autoscaling=autoscaling,
        update_mode=_update_mode(svc),
        replicas=[replica_out(svc.name, r, _num_nodes(svc, r.version)) for r in replicas],
        spec=dict(svc.latest.spec),
    )


def event_out(rec: RecordedEvent) -> EventOut:
    data = to_builtins(rec.event)
    data.pop("type", None)
    return EventOut(
        position=rec.position,
        event_id=str(rec.event_id),
        stream_id=rec.stream_id,
        stream_version=rec.version,
        type=rec.event_type,
        service=rec.event.service,
        occurred_at=rec.occurred_at,
        data=data,
        causation_id=str(rec.causation_id) if rec.causation_id else None,
        correlation_id=str(rec.correlation_id) if rec.correlation_id else None,
    )
