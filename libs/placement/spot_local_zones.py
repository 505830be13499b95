"""Simulated spot zones of the ``local`` provider, whose capacity follows a (time-compressed) trace.

The file is ``Settings.local_zone_trace`` (``$STRATUS_HOME/local-zones.json``); without it the
local provider has no zones, as before. With it, the catalog lists one ``local`` offer per zone
(``load_catalog``), so the placement and the spot policy choose among them, and the local
provider enforces each zone's spot capacity: a spot launch into a zone already holding as many
of its spot instances as the capacity fails with a capacity error, and spot instances above a
zone's capacity are preempted (the youngest first), as ``bench/spot``'s simulated provider does.

Format (JSON)::

    {"tick_seconds": 2.0, "zones": {"local-a": [2, 2, 0, 0, 2], "local-b": [1, 1, 1, 1, 1]}}

Tick ``k`` covers ``[start + k * tick_seconds, start + (k + 1) * tick_seconds)``, ``start``
being the provider's first spot launch into a traced zone; after the last tick the last value
holds. On-demand instances are not limited.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec

from libs.catalog.errors import CatalogDataError
from libs.catalog.model import Offer

LOCAL = "local"
LOCAL_ZONE_TRACE_FILE = "local-zones.json"
MAX_ZONES = 64
MAX_TICKS = 100_000


class LocalZoneTrace(msgspec.Struct, frozen=True, kw_only=True):
    tick_seconds: float
    zones: dict[str, tuple[int, ...]]

    def tick(self, elapsed: float) -> int:
        return max(0, int(elapsed // self.tick_seconds))

    def capacity(self, zone: str, elapsed: float) -> int | None:
        """``zone``'s spot capacity ``elapsed`` seconds after the start; None: not a traced zone."""
        caps = self.zones.get(zone)
        if caps is None:
            return None
        return caps[min(self.tick(elapsed), len(caps) - 1)]

    def offers(self) -> tuple[Offer, ...]:
        """One ``local`` offer per zone (free, on-demand and spot), in the file's order."""
        return tuple(
            Offer(cloud=LOCAL, region=LOCAL, zone=z, instance_type=LOCAL, price=0.0, spot_price=0.0)
            for z in self.zones
        )


def parse_zone_trace(text: str, source: str) -> LocalZoneTrace:
    """The trace in ``text``; CatalogDataError says what is wrong with it."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CatalogDataError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("zones"), dict) or not data["zones"]:
        raise CatalogDataError(f'{source}: want {{"tick_seconds": N, "zones": {{"zone": [capacity, ...]}}}}')
    tick = data.get("tick_seconds")
    if isinstance(tick, bool) or not isinstance(tick, int | float) or not math.isfinite(tick) or tick <= 0:
        raise CatalogDataError(f"{source}: tick_seconds must be a positive number, got {tick!r}")
    zones: dict[str, tuple[int, ...]] = {}
    for name, caps in data["zones"].items():
        if not name or not isinstance(caps, list) or not caps or len(caps) > MAX_TICKS:
            raise CatalogDataError(f"{source}: zone {name!r} wants a list of 1 to {MAX_TICKS} capacities")
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in caps):
            raise CatalogDataError(f"{source}: zone {name!r}: capacities are whole numbers >= 0")
        zones[name] = tuple(caps)
    if len(zones) > MAX_ZONES:
        raise CatalogDataError(f"{source}: at most {MAX_ZONES} zones, got {len(zones)}")
    return LocalZoneTrace(tick_seconds=float(tick), zones=zones)


def read_zone_trace(path: Path) -> LocalZoneTrace | None:
    """The trace at ``path``, or None when there is no such file."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogDataError(f"{path}: unreadable: {exc}") from exc
    return parse_zone_trace(text, str(path))


def excess_instances(
    trace: LocalZoneTrace, elapsed: float, running: list[tuple[str, str, float]]
) -> list[str]:
    """The spot instances to preempt ``elapsed`` seconds in: ``running`` is (instance id, zone,
    launched at); in each traced zone, the youngest above its capacity."""
    by_zone: dict[str, list[tuple[float, str]]] = {}
    for instance_id, zone, launched_at in running:
        by_zone.setdefault(zone, []).append((launched_at, instance_id))
    out: list[str] = []
    for zone, members in by_zone.items():
        cap = trace.capacity(zone, elapsed)
        if cap is not None and len(members) > cap:
            out += [iid for _, iid in sorted(members)[cap:]]
    return out
