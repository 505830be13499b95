"""Short, human descriptions of a spec (for the CLI and logs; never shows secrets)."""

from __future__ import annotations

from .accelerators import format_accelerator
from .model import ResourceCandidate, ServiceSpec


def describe_service(spec: ServiceSpec, name: str) -> str:
    """``service hello: 2 replicas, port 8080, probe GET /``."""
    svc = spec.service
    qps = svc.target_qps_per_replica
    if isinstance(qps, dict):  # instance_aware_least_load
        per = ", ".join(f"{acc} {value:g}" for acc, value in qps.items())
        replicas = f"{svc.min_replicas}-{svc.max_replicas} replicas at qps per accelerator {per}"
    elif qps is not None:
        replicas = f"{svc.min_replicas}-{svc.max_replicas} replicas at {qps:g} qps each"
    else:
        replicas = f"{svc.min_replicas} replica{'s' if svc.min_replicas != 1 else ''}"
    probe = spec.readiness_probe
    return f"service {name}: {replicas}, port {svc.ports}, probe {probe.method} {probe.path}"


def describe_resources(spec: ServiceSpec) -> str:
    """``resources: any of L4:8 | A100:4; memory=32+, spot``: what differs per candidate first."""
    res = spec.resources
    parts = []
    if res.any_of:
        choices = [" ".join(_parts(c, base=res)) or "(same)" for c in res.any_of]
        kind = "in order" if res.ordered else "any of"
        parts.append(f"{kind} {(' > ' if res.ordered else ' | ').join(choices)};")
    parts.extend(_parts(res, base=None))
    if res.use_spot:
        parts.append("spot")
    if spec.num_nodes > 1:
        parts.append(f"{spec.num_nodes} nodes per replica")
    return "resources: " + (" ".join(parts) or "any")


def _parts(c: ResourceCandidate, base: ResourceCandidate | None) -> list[str]:
    def differs(field: str) -> bool:
        return getattr(c, field) is not None and (base is None or getattr(c, field) != getattr(base, field))

    parts = []
    if differs("accelerators") and c.accelerators:
        parts.append(format_accelerator(c.accelerators))
    for field in ("cpus", "memory", "instance_type"):
        if differs(field):
            parts.append(f"{field}={getattr(c, field)}")
    location = "/".join(getattr(c, f) for f in ("cloud", "region", "zone") if differs(f))
    if location:
        parts.append(location)
    if base is not None and c.use_spot != base.use_spot:
        parts.append("spot" if c.use_spot else "on-demand")
    return parts
