"""The first replica's placement for ``up``/``update`` (validation and ``--dry-run``): no cloud
is called, the catalog and the recorded ``CloudsChecked`` (if any) decide.

With no ``CloudsChecked`` recorded every allowed cloud counts as enabled (a dry run shows what
would happen on the clouds the user allows). A spec nothing can satisfy raises ``NoOffer``,
except that a spec without ``cloud`` falls back to this machine (``local``) while no cloud is
enabled, as the scheduler does; a spec pinned to a cloud that is not enabled is accepted (the
scheduler waits and says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from libs.catalog import CLOUDS, Offer, allowed_clouds, load_catalog
from libs.fleet.policy import service_policy
from libs.fleet.state import CloudsState

from .choose import Chosen, Unplaceable, place
from .errors import NoOffer
from .match import LOCAL


def usable_clouds(clouds: CloudsState | None, allowed: Sequence[str]) -> tuple[str, ...]:
    allow = {c.lower() for c in allowed}
    if clouds is None:
        return tuple(c.lower() for c in allowed)
    return tuple(c for c in clouds.usable if not allow or c in allow)


def preview(
    spec: Mapping[str, Any],
    offers: Sequence[Offer],
    *,
    clouds: CloudsState | None,
    allowed: Sequence[str],
) -> Chosen | Unplaceable:
    """Where the first replica of ``spec`` (the normalized spec dict) would go. Raises
    ``NoOffer`` naming the resources and what the catalog has when nothing fits."""
    policy = service_policy(spec)
    known = (*CLOUDS, LOCAL)
    unknown = sorted({r.cloud for r in policy.resources if r.cloud and r.cloud.lower() not in known})
    if unknown and all(r.cloud in unknown for r in policy.resources):
        where = ", ".join((*CLOUDS, LOCAL))
        raise NoOffer(f"cloud {', '.join(unknown)}: Stratus has no provider for it (it places on {where})")
    usable = usable_clouds(clouds, allowed)
    disabled = dict(clouds.disabled) if clouds is not None else {}
    markets = [policy.use_spot] + ([False] if policy.use_spot and policy.autoscale.uses_fallback else [])
    first: Unplaceable | None = None
    for use_spot in markets:
        got = place(
            policy.resources,
            offers,
            use_spot=use_spot,
            clouds=usable,
            disabled=disabled,
            spot_placer=policy.spot_placer,
            ordered=policy.ordered,
            num_nodes=int(spec.get("num_nodes") or 1),
        )
        if isinstance(got, Chosen):
            if clouds is None and got.placement.cloud in usable:
                note = "; no provisioner has reported enabled clouds yet: all allowed clouds assumed enabled"
                return msgspec.structs.replace(got, reason=got.reason + note)
            return got
        first = first or got
    assert first is not None
    if first.kind != "no_offer":
        return first
    if clouds is None or not clouds.usable:
        # No cloud is (known to be) enabled: the scheduler runs a spec without `cloud` here.
        local = place(policy.resources, offers, use_spot=policy.use_spot, clouds=())
        if isinstance(local, Chosen):
            return Chosen(
                placement=local.placement,
                offer=local.offer,
                request_index=local.request_index,
                reason=f"local: no cloud enabled ({first.reason})",
            )
    raise NoOffer(first.reason)


def preview_in(home: Path, spec: Mapping[str, Any], clouds: CloudsState | None) -> Chosen | Unplaceable:
    """``preview`` over the catalog and ``allowed_clouds`` of ``home`` ($STRATUS_HOME).
    Raises ``NoOffer``, or ``CatalogError`` when the catalog or config.yaml is unreadable."""
    return preview(spec, load_catalog(home).offers, clouds=clouds, allowed=allowed_clouds(home))


def placement_json(found: Chosen | Unplaceable) -> dict[str, Any]:
    """What the API shows as ``placement``: the chosen location and price, or why none yet."""
    if isinstance(found, Unplaceable):
        return {"placed": False, "reason": found.reason, "kind": found.kind}
    p = found.placement
    return {
        "placed": True,
        "cloud": p.cloud,
        "region": p.region,
        "zone": p.zone,
        "instance_type": p.instance_type,
        "accelerators": {k: int(v) if float(v).is_integer() else v for k, v in p.accelerators.items()},
        "use_spot": p.use_spot,
        "price_per_hour": p.price_per_hour,
        "reason": found.reason,
    }


def placement_line(found: Chosen | Unplaceable) -> str:
    """One line for the plan summary ``up`` prints before it asks to proceed."""
    if isinstance(found, Unplaceable):
        return f"placement: none yet ({found.reason})"
    return f"placement: {found.reason}"
