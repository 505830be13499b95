"""Why nothing in the catalog satisfies a request, in terms of what the catalog does have."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from libs.catalog import Offer
from libs.fleet.policy import ResourceRequest

from .match import describe_request, matches, no_cpu_types


def _n(count: float) -> str:
    return str(int(count)) if float(count).is_integer() else str(count)


def _names(offers: Iterable[Offer]) -> str:
    names = sorted({o.accelerator for o in offers if o.accelerator}, key=str.lower)
    return ", ".join(names) if names else "no GPU instances"


def explain_request(req: ResourceRequest, offers: Sequence[Offer], clouds: Sequence[str]) -> str:
    """``"L4:8 on gcp: no offer; gcp has L4 in counts 1, 2, 4"`` and the like."""
    head = f"{describe_request(req)}: no offer"
    targets = [req.cloud.lower()] if req.cloud else list(clouds)
    if not targets:
        return f"{head}; no cloud is allowed"
    notes = []
    for cloud in targets:
        in_cloud = [o for o in offers if o.cloud == cloud]
        if not in_cloud:
            notes.append(f"the catalog has nothing on {cloud}")
            continue
        if req.accelerators:
            ((name, count),) = list(req.accelerators.items())[:1]
            same = [o for o in in_cloud if (o.accelerator or "").lower() == name.lower()]
            if not same:
                notes.append(f"{cloud} has no {name} (it has {_names(in_cloud)})")
                continue
            counts = sorted({o.accelerator_count for o in same})
            if count not in counts:
                notes.append(f"{cloud} has {name} in counts {', '.join(_n(c) for c in counts)}")
                continue
            notes.append(
                _narrowed(
                    req, [o for o in same if o.accelerator_count == count], cloud, f"{name}:{_n(count)}"
                )
            )
        elif req.instance_type:
            known = [o for o in in_cloud if o.instance_type == req.instance_type]
            if not known:
                notes.append(f"{cloud} has no instance type {req.instance_type} in the catalog")
            else:
                notes.append(_narrowed(req, known, cloud, req.instance_type))
        else:
            cpu = [o for o in in_cloud if o.accelerator is None]
            if not cpu:
                notes.append(no_cpu_types(req, in_cloud, cloud))
            else:
                notes.append(_narrowed(req, cpu, cloud, "CPU-only"))
    text = f"{head}; " + "; ".join(notes)
    if not req.accelerators and not req.instance_type and req.cloud is None:
        text += " (`cloud: local` runs it on this machine)"
    return text


def _narrowed(req: ResourceRequest, offers: Sequence[Offer], cloud: str, what: str) -> str:
    """The offers exist; say which pin or size rules them out."""
    if req.region and not any(o.region == req.region for o in offers):
        regions = sorted({o.region for o in offers})
        listed = ", ".join(regions[:8]) + ("..." if len(regions) > 8 else "")
        return f"{cloud} has {what} in {listed}, not {req.region}"
    if req.zone and not any(o.zone == req.zone for o in offers):
        return f"{cloud} has {what} but not in zone {req.zone}"
    sizes = sorted({(o.vcpus or 0.0, o.memory_gib or 0.0) for o in offers})
    shown = ", ".join(f"{_n(c)} vCPUs/{_n(m)} GiB" for c, m in sizes[:6])
    if not any(matches(req, o) for o in offers):
        wanted = f"cpus {req.cpus or 'any'}, memory {req.memory or 'any'}"
        return f"{cloud} has {what} with {shown}; none fits {wanted}"
    return f"{cloud} has {what}, but not {'on spot' if req.use_spot else 'on demand'} (no price)"


def explain(requests: Sequence[ResourceRequest], offers: Sequence[Offer], clouds: Sequence[str]) -> str:
    """One line per candidate request, joined: why none of them can be placed."""
    return " | ".join(explain_request(r, offers, clouds) for r in requests)
