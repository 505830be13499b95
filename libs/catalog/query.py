"""``show-gpus``: what the catalog offers, summarized or listed cheapest first (pure)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from .model import Offer


def parse_accelerator_filter(text: str) -> tuple[str, float | None]:
    """``"A100"`` -> ("A100", None); ``"A100:8"`` -> ("A100", 8.0). Raises ValueError with a
    message naming the bad part."""
    name, sep, count = text.strip().partition(":")
    if not name:
        raise ValueError(f"accelerator {text!r}: give a name like A100 or A100:8")
    if not sep:
        return name, None
    try:
        n = float(count)
    except ValueError as exc:
        raise ValueError(f"accelerator {text!r}: the count {count!r} is not a number") from exc
    if n <= 0:
        raise ValueError(f"accelerator {text!r}: the count must be greater than 0")
    return name, n


def accelerator_counts(offers: Iterable[Offer]) -> dict[str, dict[str, list[float]]]:
    """accelerator -> cloud -> sorted counts offered (``show-gpus`` without arguments)."""
    seen: dict[str, dict[str, set[float]]] = defaultdict(lambda: defaultdict(set))
    for o in offers:
        if o.accelerator:
            seen[o.accelerator][o.cloud].add(o.accelerator_count)
    return {
        acc: {cloud: sorted(counts) for cloud, counts in sorted(by_cloud.items())}
        for acc, by_cloud in sorted(seen.items(), key=lambda kv: kv[0].lower())
    }


def select(
    offers: Iterable[Offer],
    *,
    accelerator: str | None = None,
    count: float | None = None,
    cloud: str | None = None,
    region: str | None = None,
) -> list[Offer]:
    """Matching offers, cheapest on-demand first (no on-demand price: by spot, then last)."""
    out = [
        o
        for o in offers
        if (accelerator is None or (o.accelerator or "").lower() == accelerator.lower())
        and (count is None or o.accelerator_count == count)
        and (cloud is None or o.cloud == cloud.lower())
        and (region is None or o.region == region)
    ]
    return sorted(out, key=_price_key)


def _price_key(o: Offer) -> tuple[int, float, float, str, str, str]:
    spot = o.spot_price if o.spot_price is not None else float("inf")
    if o.price is not None:
        return (0, o.price, spot, o.cloud, o.region, o.zone)
    return (1, spot, spot, o.cloud, o.region, o.zone)


def cheapest_per_region(offers: Sequence[Offer]) -> list[Offer]:
    """One row per (cloud, instance type, region): its cheapest zone (``show-gpus`` without
    ``--all-regions`` shows the cheapest region of each instance type only)."""
    best: dict[tuple[str, str, str], Offer] = {}
    for o in offers:
        key = (o.cloud, o.instance_type, o.region)
        if key not in best or _price_key(o) < _price_key(best[key]):
            best[key] = o
    return sorted(best.values(), key=_price_key)


def cheapest_region_per_type(offers: Sequence[Offer]) -> list[Offer]:
    """One row per (cloud, instance type, accelerator count): its cheapest region and zone."""
    best: dict[tuple[str, str, str | None, float], Offer] = {}
    for o in offers:
        key = (o.cloud, o.instance_type, o.accelerator, o.accelerator_count)
        if key not in best or _price_key(o) < _price_key(best[key]):
            best[key] = o
    return sorted(best.values(), key=_price_key)
