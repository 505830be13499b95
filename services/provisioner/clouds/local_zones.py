"""The local provider's simulated spot zones (``libs.placement.spot_local_zones``): the trace's
clock, the capacity check of a spot launch, and which spot instances are above capacity."""

from __future__ import annotations

import time
from pathlib import Path

from libs.catalog.errors import CatalogError
from libs.events.types import Placement
from libs.placement.spot_local_zones import LocalZoneTrace, excess_instances, read_zone_trace

from .errors import CapacityError, LaunchError
from .local_records import iter_records


class LocalZones:
    """``path``: the zone trace (read at each use, so it can be written after the start; no
    file: no zones). The clock starts at the first spot launch into a traced zone."""

    def __init__(self, path: Path | None, replicas_dir: Path) -> None:
        self.path = path
        self.replicas_dir = replicas_dir
        self.started: float | None = None
        self.checked = 0.0

    def trace(self) -> LocalZoneTrace | None:
        if self.path is None:
            return None
        try:
            return read_zone_trace(self.path)
        except CatalogError as exc:
            raise LaunchError(f"the local zone trace is unusable: {exc}") from exc

    def spot_running(self) -> list[tuple[str, str, float]]:
        """(instance id, zone, launched at) of every spot instance launching or running."""
        return [
            (r.instance_id, r.placement.zone, r.launched_at)
            for r in iter_records(self.replicas_dir)
            if r.placement.use_spot and r.lifecycle in ("launching", "started")
        ]

    def check_launch(self, placement: Placement, now: float | None = None) -> None:
        """CapacityError when ``placement``'s zone holds as many spot instances as its capacity."""
        trace = self.trace()
        if trace is None or not placement.use_spot or placement.zone not in trace.zones:
            return
        now = time.time() if now is None else now
        if self.started is None:
            self.started = now
        cap = trace.capacity(placement.zone, now - self.started) or 0
        used = sum(1 for _, zone, _ in self.spot_running() if zone == placement.zone)
        if used >= cap:
            raise CapacityError(f"no spot capacity in local zone {placement.zone} ({used} of {cap} in use)")

    def over_capacity(self, min_interval: float = 0.2, now: float | None = None) -> list[str]:
        """The spot instances to preempt now, youngest first above each zone's capacity (checked
        at most every ``min_interval`` seconds; nothing before the clock started)."""
        now = time.time() if now is None else now
        if self.started is None or now - self.checked < min_interval:
            return []
        self.checked = now
        trace = self.trace()
        if trace is None:
            return []
        return excess_instances(trace, now - self.started, self.spot_running())
