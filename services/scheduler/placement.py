"""Pure placement optimizer and spot placer.

Candidates are the service's resource requests (``any_of`` expanded, one accelerator each);
the catalog is a small price table. The cheapest feasible offer wins; locations that recently
had a capacity failure (or, with the ``dynamic_fallback`` spot placer, a preemption) are
avoided while anything else is feasible, and ``dynamic_fallback`` spreads spot replicas over
zones first (the SpotHedge idea: preemptions are correlated within a zone).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

import msgspec

from libs.events.types import Placement
from libs.fleet.policy import ResourceRequest

LOCAL = "local"
DYNAMIC_FALLBACK = "dynamic_fallback"
ANY_ACCELERATOR = "*"

ZoneKey = tuple[str, str, str]  # (cloud, region, zone)


class CatalogEntry(msgspec.Struct, frozen=True, kw_only=True):
    cloud: str
    region: str
    zone: str
    instance_type: str
    accelerator: str | None = None  # None: CPU only; "*": anything (the local machine)
    accelerator_count: float = 0.0
    on_demand_price: float
    spot_price: float | None = None  # None: no spot offer

    @property
    def key(self) -> ZoneKey:
        return (self.cloud, self.region, self.zone)


# Small and illustrative (USD/hour); only ``local`` has a provider today.
DEFAULT_CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        cloud=LOCAL,
        region=LOCAL,
        zone="",
        instance_type=LOCAL,
        accelerator=ANY_ACCELERATOR,
        on_demand_price=0.0,
        spot_price=0.0,
    ),
    *(
        CatalogEntry(
            cloud="aws",
            region=region,
            zone=zone,
            instance_type=itype,
            accelerator=acc,
            accelerator_count=count,
            on_demand_price=od,
            spot_price=spot,
        )
        for region, zones in (("us-east-1", ("us-east-1a", "us-east-1b")), ("us-west-2", ("us-west-2a",)))
        for zone in zones
        for itype, acc, count, od, spot in (
            ("m6i.large", None, 0.0, 0.096, 0.035),
            ("g5.xlarge", "A10G", 1.0, 1.006, 0.40),
            ("p4d.24xlarge", "A100", 8.0, 32.77, 11.57),
        )
    ),
    *(
        CatalogEntry(
            cloud="gcp",
            region="us-central1",
            zone=zone,
            instance_type=itype,
            accelerator=acc,
            accelerator_count=count,
            on_demand_price=od,
            spot_price=spot,
        )
        for zone in ("us-central1-a", "us-central1-b")
        for itype, acc, count, od, spot in (
            ("n2-standard-2", None, 0.0, 0.097, 0.024),
            ("g2-standard-4", "L4", 1.0, 0.71, 0.22),
            ("a2-highgpu-1g", "A100", 1.0, 3.67, 1.10),
        )
    ),
    CatalogEntry(
        cloud="azure",
        region="eastus",
        zone="",
        instance_type="Standard_NC24ads_A100_v4",
        accelerator="A100-80GB",
        accelerator_count=1.0,
        on_demand_price=3.67,
        spot_price=1.47,
    ),
)


class Offer(msgspec.Struct, frozen=True, kw_only=True):
    """A feasible (request, catalog entry) pair and its price."""

    request_index: int
    request: ResourceRequest
    entry: CatalogEntry
    price: float


def _matches(req: ResourceRequest, entry: CatalogEntry, use_spot: bool) -> bool:
    if use_spot and entry.spot_price is None:
        return False
    cloud = req.cloud or LOCAL
    if cloud.lower() != entry.cloud:
        return False
    if entry.cloud == LOCAL:
        return True  # one location, runs anything
    if req.region and req.region != entry.region:
        return False
    if req.zone and req.zone != entry.zone:
        return False
    if req.instance_type and req.instance_type != entry.instance_type:
        return False
    if not req.accelerators:
        return entry.accelerator is None or req.instance_type == entry.instance_type
    (name, count), *_ = req.accelerators.items()
    return (
        entry.accelerator is not None
        and entry.accelerator.lower() == name.lower()
        and entry.accelerator_count == count
    )


def offers(
    requests: Sequence[ResourceRequest], *, use_spot: bool, catalog: Sequence[CatalogEntry] = DEFAULT_CATALOG
) -> list[Offer]:
    """Every feasible offer, in catalog order."""
    out = []
    for i, req in enumerate(requests):
        for entry in catalog:
            if _matches(req, entry, use_spot):
                spot = entry.spot_price
                price = spot if use_spot and spot is not None else entry.on_demand_price
                out.append(Offer(request_index=i, request=req, entry=entry, price=price))
    return out


def choose_placement(
    requests: Sequence[ResourceRequest],
    *,
    use_spot: bool,
    catalog: Sequence[CatalogEntry] = DEFAULT_CATALOG,
    avoid: Collection[ZoneKey] = (),
    spot_placer: str | None = None,
    existing: Sequence[Placement] = (),
    ordered: bool = False,
) -> Placement | None:
    """The best feasible placement, or None when nothing in the catalog fits.

    Ranking, first difference wins: not in ``avoid`` (soft: avoided locations are still used
    when nothing else fits); the request's position when ``ordered``; for spot with the
    ``dynamic_fallback`` placer, fewest ``existing`` spot replicas in that zone; price; then
    catalog order for determinism.
    """
    found = offers(requests, use_spot=use_spot, catalog=catalog)
    if not found:
        return None
    avoid_set = set(avoid)
    spread = use_spot and spot_placer == DYNAMIC_FALLBACK
    per_zone = Counter((p.cloud, p.region, p.zone) for p in existing if p.use_spot) if spread else Counter()

    def rank(item: tuple[int, Offer]) -> tuple[bool, int, int, float, int]:
        n, offer = item
        return (
            offer.entry.key in avoid_set,
            offer.request_index if ordered else 0,
            per_zone[offer.entry.key],
            offer.price,
            n,
        )

    _, best = min(enumerate(found), key=rank)
    entry, req = best.entry, best.request
    return Placement(
        cloud=entry.cloud,
        region=entry.region,
        zone=entry.zone,
        instance_type=entry.instance_type,
        accelerators=dict(req.accelerators or {}),
        use_spot=use_spot,
        price_per_hour=best.price,
    )
