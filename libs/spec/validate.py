"""Rules that span sections, checked on the normalized spec.

They run after parsing (skipping any rule whose inputs already failed, so one mistake is not
reported twice) and again on specs read back from events by ``spec_from_dict``.
"""

from __future__ import annotations

from .errors import Issue
from .fields import Issues
from .model import LOAD_BALANCING_POLICIES, SPOT_PLACERS, ServiceSpec
from .ports import MAX_PORT, MIN_PORT

_POLICY = "service.replica_policy"


def validate_spec(spec: ServiceSpec, *, known: Issues | None = None) -> list[Issue]:
    """Problems of ``spec``; rules whose inputs are among ``known`` issues are skipped."""
    known = known or Issues()
    found = Issues()
    if not known.failed("resources", "service.ports"):
        _check_ports(spec, found)
    if not known.failed("resources", _POLICY):
        _check_spot(spec, found)
    if not known.failed("service"):
        _check_service(spec, found)
    if not known.failed("run") and not spec.run.strip():
        found.add("run", "required: the command that starts the HTTP server")
    return found.items


def _check_ports(spec: ServiceSpec, found: Issues) -> None:
    port = spec.service.ports
    candidates = spec.resources.candidates()
    if any(not c.ports for c in candidates) and port and all(not c.ports for c in candidates):
        return  # service.ports alone: the replicas listen on it (SkyServe opens it for them)
    if any(not c.ports for c in candidates):
        found.add(
            "resources.ports",
            "required: the port replicas listen on (e.g. ports: 8080); the service is served from it",
        )
        return
    if not MIN_PORT <= port <= MAX_PORT:
        found.add("service.ports", f"port {port} is out of range {MIN_PORT}-{MAX_PORT}")
        return
    for c in candidates:
        if port not in c.ports:
            found.add("service.ports", f"port {port} is not one of resources.ports {c.ports}")
            return


def _check_spot(spec: ServiceSpec, found: Issues) -> None:
    svc = spec.service
    spot = [c.use_spot for c in spec.resources.candidates()]
    if any(spot) and not all(spot):
        found.add(
            "resources.use_spot",
            "candidates must all use spot or none (as in SkyServe); to mix spot and on-demand use "
            f"{_POLICY}.base_ondemand_fallback_replicas or dynamic_ondemand_fallback",
        )
        return
    if all(spot):
        return
    needs_spot = {
        "base_ondemand_fallback_replicas": svc.base_ondemand_fallback_replicas > 0,
        "dynamic_ondemand_fallback": svc.dynamic_ondemand_fallback,
        "spot_placer": svc.spot_placer is not None,
    }
    for name, used in needs_spot.items():
        if used:
            found.add(f"{_POLICY}.{name}", "requires use_spot: true in resources (for every candidate)")


def _check_service(spec: ServiceSpec, found: Issues) -> None:
    """Invariants the parser guarantees; they matter for specs that did not come from YAML."""
    svc = spec.service
    if svc.min_replicas < 0 or svc.max_replicas < svc.min_replicas:
        found.add(f"{_POLICY}.max_replicas", "must be at least min_replicas, and min_replicas at least 0")
    qps = svc.target_qps_per_replica
    targets = list(qps.values()) if isinstance(qps, dict) else [] if qps is None else [qps]
    if (isinstance(qps, dict) and not qps) or any(not t > 0 for t in targets):
        found.add(f"{_POLICY}.target_qps_per_replica", "must be greater than 0")
    timings = {
        "readiness_probe.timeout_seconds": svc.readiness_timeout_seconds,
        "readiness_probe.endpoint_probe_interval_seconds": svc.endpoint_probe_interval_seconds,
        "load_balancer.stream_timeout_seconds": svc.stream_timeout_seconds,
    }
    for name, seconds in timings.items():
        if seconds is not None and not seconds > 0:
            found.add(f"service.{name}", "must be greater than 0")
    if svc.load_balancing_policy not in LOAD_BALANCING_POLICIES:
        found.add("service.load_balancing_policy", f"must be one of {', '.join(LOAD_BALANCING_POLICIES)}")
    if svc.spot_placer is not None and svc.spot_placer not in SPOT_PLACERS:
        found.add(f"{_POLICY}.spot_placer", f"must be one of {', '.join(SPOT_PLACERS)}")
    if not svc.readiness_path.startswith("/"):
        found.add("service.readiness_probe", "path must start with '/'")
