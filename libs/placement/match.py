"""Does a catalog offer satisfy one resource request? (pure)

``cpus``/``memory`` are ``"N"`` (exactly N) or ``"N+"`` (at least N), as SkyPilot writes them;
accelerator names compare case-insensitively and counts exactly; ``instance_type``, ``cloud``,
``region`` and ``zone`` pin. A request with no accelerator matches CPU-only offers, or any
offer of the instance type it names. ``disk_size`` does not change the price.

The shipped catalog has CPU-only rows on GCP alone (N1 hosts; see libs/catalog/data/README.md):
on AWS and Azure every row is a GPU instance, so a CPU-only request can only be placed there by
naming an ``instance_type``. ``no_cpu_types`` says so, with the cheapest type that would do.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.catalog import Offer
from libs.fleet.policy import ResourceRequest

LOCAL = "local"
# The machine Stratus runs on: one location, runs anything, free.
LOCAL_OFFER = Offer(cloud=LOCAL, region=LOCAL, zone="", instance_type=LOCAL, price=0.0, spot_price=0.0)


def parse_size(text: str) -> tuple[float, bool]:
    """``"4+"`` -> (4.0, True: at least); ``"16"`` -> (16.0, False: exactly)."""
    at_least = text.endswith("+")
    return float(text.rstrip("+")), at_least


def size_ok(want: str | None, have: float | None) -> bool:
    if want is None:
        return True
    if have is None:
        return False
    try:
        value, at_least = parse_size(want)
    except ValueError:
        return False
    return have >= value if at_least else abs(have - value) < 1e-9


def matches(req: ResourceRequest, offer: Offer) -> bool:
    """Whether ``offer`` has what ``req`` asks (location pins included; price not considered)."""
    if req.cloud is not None and req.cloud.lower() != offer.cloud:
        return False
    if req.region and req.region != offer.region:
        return False
    if req.zone and req.zone != offer.zone:
        return False
    if req.instance_type and req.instance_type != offer.instance_type:
        return False
    if not size_ok(req.cpus, offer.vcpus) or not size_ok(req.memory, offer.memory_gib):
        return False
    if not req.accelerators:
        return offer.accelerator is None or bool(req.instance_type)
    ((name, count),) = list(req.accelerators.items())[:1]
    return (
        offer.accelerator is not None
        and offer.accelerator.lower() == name.lower()
        and offer.accelerator_count == count
    )


def describe_request(req: ResourceRequest) -> str:
    """``"A100:8 on aws (us-east-1), spot, cpus 8+"``: the request as a user wrote it."""
    parts = []
    if req.accelerators:
        parts.append(", ".join(f"{n}:{_n(c)}" for n, c in req.accelerators.items()))
    elif req.instance_type:
        parts.append(req.instance_type)
    else:
        parts.append("CPU only")
    if req.instance_type and req.accelerators:
        parts.append(f"instance_type {req.instance_type}")
    where = req.cloud or "any cloud"
    loc = "/".join(p for p in (req.region, req.zone) if p)
    text = " ".join(parts) + f" on {where}" + (f" ({loc})" if loc else "")
    extras = [f"cpus {req.cpus}" if req.cpus else "", f"memory {req.memory}" if req.memory else ""]
    extras = [e for e in extras if e]
    return text + (", " + ", ".join(extras) if extras else "")


def _n(count: float) -> str:
    return str(int(count)) if float(count).is_integer() else str(count)


def _price(p: float) -> str:
    """$1.00/h, $0.7354/h: two decimals, or up to four when needed."""
    text = f"{p:.4f}".rstrip("0")
    return f"${text if len(text.partition('.')[2]) >= 2 else f'{p:.2f}'}/h"


def no_cpu_types(req: ResourceRequest, in_cloud: Sequence[Offer], cloud: str) -> str:
    """Why a CPU-only ``req`` has no offer on ``cloud``, whose catalog rows are all GPU types, and
    the fix: ``instance_type`` set to the cheapest type there that fits (dropping ``cpus`` /
    ``memory`` when none fits them), or ``accelerators``."""
    priced = [o for o in in_cloud if o.hourly(req.use_spot) is not None]
    pinned = [
        o
        for o in priced
        if (not req.region or o.region == req.region) and (not req.zone or o.zone == req.zone)
    ]
    priced = pinned or priced  # the suggestion respects region/zone pins where it can
    head = f"the catalog lists no CPU-only instance type on {cloud} (GPU instances only)"
    if not priced:
        return head
    fitting = [o for o in priced if size_ok(req.cpus, o.vcpus) and size_ok(req.memory, o.memory_gib)]
    best = min(fitting or priced, key=lambda o: (o.hourly(req.use_spot) or 0.0, o.instance_type))
    gpu = f"{best.accelerator}:{_n(best.accelerator_count)}" if best.accelerator else "no GPU"
    sized = f"{_n(best.vcpus or 0)} vCPUs, {_n(best.memory_gib or 0)} GiB"
    fix = f"`instance_type: {best.instance_type}` ({gpu}, {sized}, {_price(best.hourly(req.use_spot) or 0.0)}"
    fix += f"{' spot' if req.use_spot else ''}, the cheapest {cloud} type"
    if fitting:
        fix += " that fits)"
    else:
        sizes = " and ".join(f"{k} {v}" for k, v in (("cpus", req.cpus), ("memory", req.memory)) if v)
        fix += f"; none fits {sizes}, so drop that)"
    return f"{head}; to run it on {cloud}, set {fix}, or ask for `accelerators`"
