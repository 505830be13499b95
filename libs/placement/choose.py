"""The placement optimizer: the cheapest offer that satisfies a service's resources (pure).

Candidates are every (request, offer) pair of the allowed and enabled clouds whose offer
satisfies the request and has a price for the wanted market (spot or on-demand). Locations
that failed recently are *blocked* (hard): a capacity failure blocks that instance type in
that zone, a quota failure the whole region of that cloud, each for one market and until
``until`` (capacity comes back); when everything is blocked the result says so and when to
retry. Preempted zones are *avoided* (soft) by the ``dynamic_fallback`` spot placer, which
also spreads spot replicas over zones first (SpotHedge: preemptions are correlated per zone).

Ranking, first difference wins: not avoided; the request's position when ``ordered``; fewest
existing spot replicas in the zone (``dynamic_fallback`` spot only); price; then catalog order.
A request with no ``cloud`` runs on this machine (``local``, $0) when no cloud is enabled,
else across the enabled ones; a request pinned to a cloud that is not enabled is unplaceable,
with the reason. A multi-node replica (``num_nodes``) costs its offer's price once per node: the
price compared, recorded in the placement (``price_per_hour``) and shown is the replica's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import msgspec

from libs.catalog import Offer
from libs.events.types import Placement
from libs.fleet.policy import ResourceRequest
from libs.fleet.state import ZoneEvent

from .explain import explain
from .match import LOCAL, LOCAL_OFFER, describe_request, matches

DYNAMIC_FALLBACK = "dynamic_fallback"
BLOCKING_KINDS = ("capacity", "quota")
ZoneKey = tuple[str, str, str]  # (cloud, region, zone)


class Block(msgspec.Struct, frozen=True, kw_only=True):
    """A location not to try before ``until`` (a ``capacity`` or ``quota`` launch failure)."""

    cloud: str
    region: str
    zone: str = ""  # quota: "" (the whole region)
    instance_type: str = ""  # quota: "" (any)
    use_spot: bool
    kind: str
    message: str = ""
    until: float

    def covers(self, offer: Offer, use_spot: bool) -> bool:
        if use_spot != self.use_spot or offer.cloud != self.cloud or offer.region != self.region:
            return False
        if self.kind == "quota":
            return True
        return offer.zone == self.zone and (
            not self.instance_type or offer.instance_type == self.instance_type
        )

    @property
    def where(self) -> str:
        loc = "/".join(p for p in (self.cloud, self.region, self.zone) if p)
        return f"{loc} {self.instance_type}".strip()


def blocks_from(zone_events: Iterable[ZoneEvent], now: float, retry_seconds: float) -> list[Block]:
    """The blocks still in force at ``now`` from recorded capacity/quota failures."""
    out = []
    for ev in zone_events:
        if ev.kind not in BLOCKING_KINDS or ev.cloud == LOCAL or now >= ev.at + retry_seconds:
            continue
        quota = ev.kind == "quota"
        out.append(
            Block(
                cloud=ev.cloud,
                region=ev.region,
                zone="" if quota else ev.zone,
                instance_type="" if quota else ev.instance_type,
                use_spot=ev.use_spot,
                kind=ev.kind,
                message=ev.message,
                until=ev.at + retry_seconds,
            )
        )
    return out


class Chosen(msgspec.Struct, frozen=True, kw_only=True):
    placement: Placement
    offer: Offer
    request_index: int
    reason: str  # why here: recorded with ReplicaScheduled


class Unplaceable(msgspec.Struct, frozen=True, kw_only=True):
    """No placement now. ``kind``: ``no_offer`` (the catalog has nothing that fits: a spec
    error), ``not_enabled`` (a pinned cloud is not enabled yet), ``blocked`` (every fitting
    offer failed recently; ``retry_at`` says when the first block ends)."""

    reason: str
    kind: Literal["no_offer", "not_enabled", "blocked"] = "no_offer"
    retry_at: float | None = None


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S UTC")


def _price(p: float) -> str:
    """$1.00/h, $0.7354/h: two decimals, or up to four when needed."""
    text = f"{p:.4f}".rstrip("0")
    if len(text.partition(".")[2]) < 2:
        text = f"{p:.2f}"
    return f"${text}/h"


class _Candidate(msgspec.Struct, frozen=True):
    index: int
    request_index: int
    offer: Offer
    price: float


def place(
    requests: Sequence[ResourceRequest],
    offers: Sequence[Offer],
    *,
    use_spot: bool,
    clouds: Collection[str] = (),
    disabled: Mapping[str, str] | None = None,
    blocks: Sequence[Block] = (),
    avoid: Collection[ZoneKey] = (),
    existing: Sequence[Placement] = (),
    spot_placer: str | None = None,
    ordered: bool = False,
    zone_score: Mapping[ZoneKey, float] | None = None,
    num_nodes: int = 1,
) -> Chosen | Unplaceable:
    """The best placement for one replica, or why there is none. ``clouds`` are the usable
    (allowed and enabled) clouds; ``disabled`` says why others are not. ``zone_score`` (the
    spot policy's, ``spot_policy.zone_view``) ranks zones after the spread, lower first."""
    usable = {c.lower() for c in clouds}
    why_not = {k.lower(): v for k, v in (disabled or {}).items()}
    found: list[_Candidate] = []
    pinned_off: list[str] = []
    for i, req in enumerate(requests):
        cloud = req.cloud.lower() if req.cloud else None
        if cloud == LOCAL or (cloud is None and not usable):
            # The local provider's simulated zones (spot_local_zones) when the catalog has them.
            zoned = [o for o in offers if o.cloud == LOCAL]
            found.extend(_Candidate(len(found) + k, i, o, 0.0) for k, o in enumerate(zoned or [LOCAL_OFFER]))
            continue
        if cloud is not None and cloud not in usable:
            reason = why_not.get(cloud, "not allowed, or not reported enabled by the provisioner")
            pinned_off.append(f"{describe_request(req)}: cloud {cloud} is not enabled ({reason})")
            continue
        for offer in offers:
            if offer.cloud not in usable or not matches(req, offer):
                continue
            price = offer.hourly(use_spot)
            if price is not None:
                found.append(_Candidate(len(found), i, offer, price * num_nodes))
    if not found:
        if pinned_off:
            reason = "; ".join(pinned_off) + "; `stratus check` says how to enable it"
            return Unplaceable(reason=reason, kind="not_enabled")
        market = [msgspec.structs.replace(r, use_spot=use_spot) for r in requests]
        return Unplaceable(reason=explain(market, offers, sorted(usable)))
    open_ = [c for c in found if not any(b.covers(c.offer, use_spot) for b in blocks)]
    if not open_:
        retry = min(b.until for b in blocks)
        shown = "; ".join(
            f"{b.where}: {b.kind}" + (f" ({b.message})" if b.message else "") for b in blocks[:4]
        )
        return Unplaceable(
            reason=f"every offer ({len(found)}) failed recently: {shown}; retrying from {_clock(retry)}",
            kind="blocked",
            retry_at=retry,
        )
    avoid_set = set(avoid)
    spread = use_spot and spot_placer == DYNAMIC_FALLBACK
    per_zone = Counter((p.cloud, p.region, p.zone) for p in existing if p.use_spot) if spread else Counter()

    scores = zone_score or {}

    def rank(c: _Candidate) -> tuple[bool, int, int, float, float, int]:
        key = (c.offer.cloud, c.offer.region, c.offer.zone)
        score = scores.get(key, 0.0)
        return (key in avoid_set, c.request_index if ordered else 0, per_zone[key], score, c.price, c.index)

    best = min(open_, key=rank)
    req = requests[best.request_index]
    offer = best.offer
    placement = Placement(
        cloud=offer.cloud,
        region=offer.region,
        zone=offer.zone,
        instance_type=offer.instance_type,
        accelerators=dict(req.accelerators or {}),
        use_spot=use_spot,
        price_per_hour=best.price,
        disk_size=req.disk_size,
    )
    return Chosen(placement=placement, offer=offer, request_index=best.request_index,
                  reason=_reason(best, found, open_, blocks, use_spot, num_nodes))  # fmt: skip


def _reason(
    best: _Candidate,
    found: Sequence[_Candidate],
    open_: Sequence[_Candidate],
    blocks: Sequence[Block],
    spot: bool,
    num_nodes: int = 1,
) -> str:
    o = best.offer
    if o.cloud == LOCAL:
        return "local: no cloud enabled for a spec without `cloud`" if len(found) == 1 else "local"
    where = "/".join(p for p in (o.cloud, o.region, o.zone) if p)
    text = f"{where} {o.instance_type} {'spot' if spot else 'on-demand'} at {_price(best.price)}"
    if num_nodes > 1:
        text += f" ({num_nodes} nodes at {_price(best.price / num_nodes)})"
    text += f": best of {len(open_)} offers"
    skipped = len(found) - len(open_)
    if skipped:
        used = [b for b in blocks if any(b.covers(c.offer, spot) for c in found)]
        shown = "; ".join(f"{b.where} {b.kind}" + (f" ({b.message})" if b.message else "") for b in used[:3])
        text += f" ({skipped} blocked until retried: {shown})"
    return text
