"""The decision code's views of a service version's spec (probe, autoscaling, placement).

They read the typed ``ServiceSpec`` that the fold decoded once from ``ServiceRequested.spec``
(``libs.spec.decode_recorded_spec``: lenient, so an older, partial or garbage spec in the log
still folds); a dict is accepted too and decoded the same way. Values the parser would refuse but
a recorded event may hold (negative counts, an unknown policy, a QPS target <= 0) fall back to
SkyServe's defaults here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from libs.spec import ResourceCandidate, Resources, ServiceSpec, decode_recorded_spec
from libs.spec.model import INSTANCE_AWARE_POLICY, LOAD_BALANCING_POLICIES

DEFAULT_INITIAL_DELAY_SECONDS = 1200.0
DEFAULT_READINESS_TIMEOUT_SECONDS = 15.0
DEFAULT_UPSCALE_DELAY_SECONDS = 300.0
DEFAULT_DOWNSCALE_DELAY_SECONDS = 1200.0
# SkyServe terminates a replica whose probes keep failing for this long.
DEFAULT_PROBE_FAILURE_THRESHOLD_SECONDS = 180.0
DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS = 10.0
DEFAULT_STREAM_TIMEOUT_SECONDS = 120.0
DEFAULT_QPS_WINDOW_SECONDS = 60.0
DEFAULT_DECISION_INTERVAL_SECONDS = 20.0


class ProbePolicy(msgspec.Struct, frozen=True, kw_only=True):
    path: str = "/"
    post_data: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    initial_delay_seconds: float = DEFAULT_INITIAL_DELAY_SECONDS
    timeout_seconds: float = DEFAULT_READINESS_TIMEOUT_SECONDS
    failure_threshold_seconds: float = DEFAULT_PROBE_FAILURE_THRESHOLD_SECONDS
    # The spec wrote consecutive_failure_threshold_timeout (else the prober's setting applies).
    failure_threshold_from_spec: bool = False
    # endpoint_probe_interval_seconds; None (a spec recorded before it existed): the prober's own.
    interval_seconds: float | None = None

    @property
    def method(self) -> str:
        return "GET" if self.post_data is None else "POST"


class AutoscalePolicy(msgspec.Struct, frozen=True, kw_only=True):
    min_replicas: int = 1
    max_replicas: int = 1
    # With instance_aware_least_load: {accelerator: QPS}; target_qps_per_replica is then the
    # largest of them (SkyServe's upscaling unit).
    target_qps_per_replica: float | None = None
    target_qps_per_accelerator: dict[str, float] = {}
    upscale_delay_seconds: float = DEFAULT_UPSCALE_DELAY_SECONDS
    downscale_delay_seconds: float = DEFAULT_DOWNSCALE_DELAY_SECONDS
    num_overprovision: int = 0
    base_ondemand_fallback_replicas: int = 0
    dynamic_ondemand_fallback: bool = False
    use_spot: bool = False
    window_seconds: float = DEFAULT_QPS_WINDOW_SECONDS
    decision_interval_seconds: float = DEFAULT_DECISION_INTERVAL_SECONDS

    @property
    def autoscales(self) -> bool:
        return self.target_qps_per_replica is not None and self.target_qps_per_replica > 0

    @property
    def uses_fallback(self) -> bool:
        return self.use_spot and (self.base_ondemand_fallback_replicas > 0 or self.dynamic_ondemand_fallback)


class ResourceRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One placement candidate: at most one accelerator type (sets are expanded)."""

    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    accelerators: dict[str, float] | None = None
    use_spot: bool = False
    ports: tuple[int, ...] = ()
    # "4" (exactly) or "4+" (at least), as in the spec; None: any.
    cpus: str | None = None
    memory: str | None = None
    disk_size: int | None = None  # GB; passed through to the provider, not priced


class ServicePolicy(msgspec.Struct, frozen=True, kw_only=True):
    probe: ProbePolicy = ProbePolicy()
    autoscale: AutoscalePolicy = AutoscalePolicy()
    resources: tuple[ResourceRequest, ...] = (ResourceRequest(),)
    # ``any_of`` order is a preference (SkyPilot's ``ordered``), not just a set.
    ordered: bool = False
    use_spot: bool = False
    spot_placer: str | None = None
    load_balancing_policy: str = "least_load"
    port: int = 8080
    stream_timeout_seconds: float = DEFAULT_STREAM_TIMEOUT_SECONDS


# --------------------------------------------------------------------------- readers


def _typed(spec: ServiceSpec | Mapping[str, Any]) -> ServiceSpec:
    return spec if isinstance(spec, ServiceSpec) else decode_recorded_spec(spec)


def _seconds(value: float, default: float, *, positive: bool = False) -> float:
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    return float(value) if ok else default


def _count(value: int) -> int:
    return max(0, value)


def _candidate_requests(c: ResourceCandidate) -> list[ResourceRequest]:
    """One request per accelerator choice (a recorded set ``{A100: 8, L4: 8}`` is expanded)."""
    choices: list[dict[str, float] | None] = (
        [{name: float(count)} for name, count in c.accelerators.items()] if c.accelerators else [None]
    )
    return [
        ResourceRequest(
            cloud=c.cloud or None,
            region=c.region or None,
            zone=c.zone or None,
            instance_type=c.instance_type or None,
            accelerators=acc,
            use_spot=c.use_spot,
            ports=tuple(c.ports),
            cpus=c.cpus or None,
            memory=c.memory or None,
            disk_size=c.disk_size if c.disk_size and c.disk_size > 0 else None,
        )
        for acc in choices
    ]


def _accelerator_shorthand(value: object) -> object:
    """``"A100:2"`` (a hand-written dict's shorthand) -> ``{"A100": 2}``; other values as they are."""
    if isinstance(value, str) and value:
        name, _, count = value.partition(":")
        try:
            return {name: float(count) if count else 1.0}
        except ValueError:
            return {name: 1.0}
    if isinstance(value, Mapping):
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value.values())
        return value if ok else {str(k): 1.0 for k in value}
    return value


def resource_requests(resources: Resources | Mapping[str, Any]) -> tuple[ResourceRequest, ...]:
    """The candidates: each ``any_of`` entry over the base fields, or the base alone."""
    if not isinstance(resources, Resources):
        raw = dict(resources)
        if "accelerators" in raw:
            raw["accelerators"] = _accelerator_shorthand(raw["accelerators"])
        alternatives = raw.get("any_of")
        if isinstance(alternatives, list):
            base = {k: v for k, v in raw.items() if k not in ("any_of", "ordered")}
            merged = [{**base, **alt} for alt in alternatives if isinstance(alt, Mapping)]
            for alt in merged:
                if "accelerators" in alt:
                    alt["accelerators"] = _accelerator_shorthand(alt["accelerators"])
            raw["any_of"] = merged
        resources = decode_recorded_spec({"resources": raw}).resources
    out = [r for c in resources.candidates() for r in _candidate_requests(c)]
    return tuple(out) if out else (ResourceRequest(),)


def probe_policy(
    spec: ServiceSpec | Mapping[str, Any],
    *,
    failure_threshold_seconds: float = DEFAULT_PROBE_FAILURE_THRESHOLD_SECONDS,
) -> ProbePolicy:
    """``failure_threshold_seconds``: used unless the spec wrote its own."""
    svc = _typed(spec).service
    written = svc.consecutive_failure_threshold_timeout
    from_spec = written is not None and math.isfinite(written) and written > 0
    return ProbePolicy(
        path=svc.readiness_path if svc.readiness_path.startswith("/") else "/",
        post_data=svc.post_data,
        headers=dict(svc.headers),
        initial_delay_seconds=_seconds(svc.initial_delay_seconds, DEFAULT_INITIAL_DELAY_SECONDS),
        timeout_seconds=_seconds(
            svc.readiness_timeout_seconds, DEFAULT_READINESS_TIMEOUT_SECONDS, positive=True
        ),
        failure_threshold_seconds=(
            float(written) if from_spec and written is not None else failure_threshold_seconds
        ),
        failure_threshold_from_spec=from_spec,
        interval_seconds=(
            None
            if svc.endpoint_probe_interval_seconds is None
            else _seconds(
                svc.endpoint_probe_interval_seconds, DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS, positive=True
            )
        ),
    )


def _qps_targets(value: float | dict[str, float] | None) -> tuple[float | None, dict[str, float]]:
    if isinstance(value, dict):
        per = {k: float(v) for k, v in value.items() if math.isfinite(v) and v > 0}
        return (max(per.values()) if per else None), per
    if value is not None and math.isfinite(value) and value > 0:
        return float(value), {}
    return None, {}


def autoscale_policy(
    spec: ServiceSpec | Mapping[str, Any],
    *,
    window_seconds: float = DEFAULT_QPS_WINDOW_SECONDS,
    decision_interval_seconds: float = DEFAULT_DECISION_INTERVAL_SECONDS,
) -> AutoscalePolicy:
    typed = _typed(spec)
    svc = typed.service
    min_replicas = _count(svc.min_replicas)
    max_replicas = max(min_replicas, _count(svc.max_replicas))
    qps, per_accelerator = _qps_targets(svc.target_qps_per_replica)
    return AutoscalePolicy(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_qps_per_replica=qps,
        target_qps_per_accelerator=per_accelerator,
        upscale_delay_seconds=_seconds(svc.upscale_delay_seconds, DEFAULT_UPSCALE_DELAY_SECONDS),
        downscale_delay_seconds=_seconds(svc.downscale_delay_seconds, DEFAULT_DOWNSCALE_DELAY_SECONDS),
        num_overprovision=_count(svc.num_overprovision),
        base_ondemand_fallback_replicas=_count(svc.base_ondemand_fallback_replicas),
        dynamic_ondemand_fallback=svc.dynamic_ondemand_fallback,
        use_spot=any(r.use_spot for r in resource_requests(typed.resources)),
        window_seconds=window_seconds,
        decision_interval_seconds=decision_interval_seconds,
    )


def service_policy(spec: ServiceSpec | Mapping[str, Any]) -> ServicePolicy:
    typed = _typed(spec)
    svc = typed.service
    requests = resource_requests(typed.resources)
    lb = svc.load_balancing_policy
    autoscale = autoscale_policy(typed)
    if lb == INSTANCE_AWARE_POLICY and not autoscale.target_qps_per_accelerator:
        lb = "least_load"  # nothing to weigh replicas by
    return ServicePolicy(
        probe=probe_policy(typed),
        autoscale=autoscale,
        resources=requests,
        ordered=typed.resources.ordered,
        use_spot=any(r.use_spot for r in requests),
        spot_placer=svc.spot_placer or None,
        load_balancing_policy=lb if lb in LOAD_BALANCING_POLICIES else "least_load",
        port=svc.ports if 0 < svc.ports < 65536 else 8080,
        stream_timeout_seconds=_seconds(
            svc.stream_timeout_seconds, DEFAULT_STREAM_TIMEOUT_SECONDS, positive=True
        ),
    )


def target_qps_for(policy: AutoscalePolicy, accelerator: str | None) -> float:
    """SkyServe's per-accelerator QPS lookup: exact key, else the key without its ``:count``,
    else the smallest target (an unknown or CPU-only replica)."""
    per = policy.target_qps_per_accelerator
    if not per:
        return policy.target_qps_per_replica or 1.0
    if accelerator is not None:
        if accelerator in per:
            return per[accelerator]
        for key, qps in per.items():
            if key.split(":")[0] == accelerator:
                return qps
    return min(per.values())


def instance_aware_scale_down(policy: AutoscalePolicy) -> bool:
    """Whether SkyServe's instance-aware autoscaler chooses the replicas a scale-down removes: a
    per-accelerator ``target_qps_per_replica`` without on-demand fallback (with fallback SkyServe
    0.14.1 runs its fallback autoscaler, which removes by status, version and id)."""
    return bool(policy.target_qps_per_accelerator) and not policy.uses_fallback


def instance_aware_scale_down_key(
    policy: AutoscalePolicy, accelerators: Mapping[str, float], version: int, replica_id: int
) -> tuple[float, int, int]:
    """SkyServe 0.14.1's order of the replicas an instance-aware scale-down removes (sorted
    ascending, first removed first): the lowest target QPS of the replica's accelerator (an
    unknown or CPU-only one counts as the smallest target), then the older version, then the
    newer replica id. Its first sort key, the status's ``scale_down_decision_order()``, is the
    same list for every replica, so the status orders nothing there; nor does it here."""
    return target_qps_for(policy, next(iter(accelerators), None)), version, -replica_id


def replica_capacities(
    policy: AutoscalePolicy, accelerators: Mapping[int, Mapping[str, float]]
) -> dict[int, float]:
    """replica id -> target QPS of its accelerator (its placement's first), for
    ``instance_aware_least_load``; empty when the service has no per-accelerator targets."""
    if not policy.target_qps_per_accelerator:
        return {}
    return {rid: target_qps_for(policy, next(iter(acc), None)) for rid, acc in accelerators.items()}


# --------------------------------------------------------------------------- shared arithmetic


def split_spot_on_demand(policy: AutoscalePolicy, target: int, ready_spot: int) -> tuple[int, int]:
    """SkyServe's fallback split of a final target (overprovision included) -> (spot, on-demand).

    Spot gets ``target - base_ondemand_fallback_replicas``; on-demand gets the base plus, with
    ``dynamic_ondemand_fallback``, one per wanted spot replica that is not READY. On-demand never
    exceeds the target without overprovision (no fallback for overprovisioned replicas).
    """
    if not policy.use_spot:
        return 0, target
    spot = max(0, target - policy.base_ondemand_fallback_replicas)
    on_demand = policy.base_ondemand_fallback_replicas
    if policy.dynamic_ondemand_fallback:
        on_demand += max(0, spot - ready_spot)
    on_demand = min(on_demand, max(0, target - policy.num_overprovision))
    return spot, on_demand
