"""Typed, defensive views over the normalized spec dict carried by ``ServiceRequested.spec``.

The spec parser owns validation; this module only reads the keys the decision code needs,
with SkyServe's defaults, so an older or partial spec in the log still folds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

DEFAULT_INITIAL_DELAY_SECONDS = 1200.0
DEFAULT_READINESS_TIMEOUT_SECONDS = 15.0
DEFAULT_UPSCALE_DELAY_SECONDS = 300.0
DEFAULT_DOWNSCALE_DELAY_SECONDS = 1200.0
# SkyServe terminates a replica whose probes keep failing for this long.
DEFAULT_PROBE_FAILURE_THRESHOLD_SECONDS = 180.0
DEFAULT_QPS_WINDOW_SECONDS = 60.0
DEFAULT_DECISION_INTERVAL_SECONDS = 20.0


class ProbePolicy(msgspec.Struct, frozen=True, kw_only=True):
    path: str = "/"
    post_data: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    initial_delay_seconds: float = DEFAULT_INITIAL_DELAY_SECONDS
    timeout_seconds: float = DEFAULT_READINESS_TIMEOUT_SECONDS
    failure_threshold_seconds: float = DEFAULT_PROBE_FAILURE_THRESHOLD_SECONDS

    @property
    def method(self) -> str:
        return "GET" if self.post_data is None else "POST"


class AutoscalePolicy(msgspec.Struct, frozen=True, kw_only=True):
    min_replicas: int = 1
    max_replicas: int = 1
    target_qps_per_replica: float | None = None
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


# --------------------------------------------------------------------------- readers


def _section(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key)
    return value if isinstance(value, Mapping) else {}


def _num(d: Mapping[str, Any], key: str, default: float) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


def _opt_num(d: Mapping[str, Any], key: str) -> float | None:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _int(d: Mapping[str, Any], key: str, default: int) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return max(0, int(value))


def _str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    return value if isinstance(value, str) and value else None


def _accelerators(value: object) -> list[dict[str, float] | None]:
    """``{A100: 8, L4: 8}`` (a set of choices) -> one single-entry dict per choice."""
    if isinstance(value, Mapping) and value:
        out: list[dict[str, float] | None] = []
        for name, count in value.items():
            ok = isinstance(count, int | float) and not isinstance(count, bool)
            out.append({str(name): float(count) if ok else 1.0})
        return out
    if isinstance(value, str) and value:
        name, _, count = value.partition(":")
        try:
            return [{name: float(count) if count else 1.0}]
        except ValueError:
            return [{name: 1.0}]
    return [None]


def _size(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value) or None


def _requests(d: Mapping[str, Any]) -> list[ResourceRequest]:
    ports = d.get("ports")
    port_list = tuple(p for p in ports if isinstance(p, int)) if isinstance(ports, list) else ()
    return [
        ResourceRequest(
            cloud=_str(d, "cloud"),
            region=_str(d, "region"),
            zone=_str(d, "zone"),
            instance_type=_str(d, "instance_type"),
            accelerators=acc,
            use_spot=d.get("use_spot") is True,
            ports=port_list,
            cpus=_size(d.get("cpus")),
            memory=_size(d.get("memory")),
            disk_size=_int(d, "disk_size", 0) or None,
        )
        for acc in _accelerators(d.get("accelerators"))
    ]


def resource_requests(resources: Mapping[str, Any]) -> tuple[ResourceRequest, ...]:
    """The candidates: each ``any_of`` entry over the base fields, or the base alone."""
    alternatives = resources.get("any_of")
    base = {k: v for k, v in resources.items() if k not in ("any_of", "ordered")}
    out: list[ResourceRequest] = []
    if isinstance(alternatives, list) and alternatives:
        for alt in alternatives:
            if isinstance(alt, Mapping):
                out.extend(_requests({**base, **alt}))
    if not out:
        out = _requests(base)
    return tuple(out)


def probe_policy(
    spec: Mapping[str, Any], *, failure_threshold_seconds: float = DEFAULT_PROBE_FAILURE_THRESHOLD_SECONDS
) -> ProbePolicy:
    svc = _section(spec, "service")
    post_data = svc.get("post_data")
    headers = svc.get("headers")
    return ProbePolicy(
        path=_str(svc, "readiness_path") or "/",
        post_data=dict(post_data) if isinstance(post_data, Mapping) else None,
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {},
        initial_delay_seconds=_num(svc, "initial_delay_seconds", DEFAULT_INITIAL_DELAY_SECONDS),
        timeout_seconds=_num(svc, "readiness_timeout_seconds", DEFAULT_READINESS_TIMEOUT_SECONDS),
        failure_threshold_seconds=failure_threshold_seconds,
    )


def autoscale_policy(
    spec: Mapping[str, Any],
    *,
    window_seconds: float = DEFAULT_QPS_WINDOW_SECONDS,
    decision_interval_seconds: float = DEFAULT_DECISION_INTERVAL_SECONDS,
) -> AutoscalePolicy:
    svc = _section(spec, "service")
    res = _section(spec, "resources")
    min_replicas = _int(svc, "min_replicas", 1)
    max_replicas = max(min_replicas, _int(svc, "max_replicas", min_replicas))
    qps = _opt_num(svc, "target_qps_per_replica")
    use_spot = any(r.use_spot for r in resource_requests(res))
    return AutoscalePolicy(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_qps_per_replica=qps if qps is not None and qps > 0 else None,
        upscale_delay_seconds=_num(svc, "upscale_delay_seconds", DEFAULT_UPSCALE_DELAY_SECONDS),
        downscale_delay_seconds=_num(svc, "downscale_delay_seconds", DEFAULT_DOWNSCALE_DELAY_SECONDS),
        num_overprovision=_int(svc, "num_overprovision", 0),
        base_ondemand_fallback_replicas=_int(svc, "base_ondemand_fallback_replicas", 0),
        dynamic_ondemand_fallback=svc.get("dynamic_ondemand_fallback") is True,
        use_spot=use_spot,
        window_seconds=window_seconds,
        decision_interval_seconds=decision_interval_seconds,
    )


def service_policy(spec: Mapping[str, Any]) -> ServicePolicy:
    svc = _section(spec, "service")
    res = _section(spec, "resources")
    requests = resource_requests(res)
    lb = _str(svc, "load_balancing_policy")
    return ServicePolicy(
        probe=probe_policy(spec),
        autoscale=autoscale_policy(spec),
        resources=requests,
        ordered=res.get("ordered") is True,
        use_spot=any(r.use_spot for r in requests),
        spot_placer=_str(svc, "spot_placer"),
        load_balancing_policy=lb if lb in ("least_load", "round_robin") else "least_load",
        port=_int(svc, "ports", 8080),
    )


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
