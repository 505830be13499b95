"""Instance-hours and their cost, from the fleet projection (pure: ``now`` is passed in)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from libs.fleet.state import FleetState, ReplicaState


@dataclass(frozen=True, slots=True)
class Usage:
    hours: float = 0.0
    cost: float = 0.0


def replica_end(r: ReplicaState) -> float | None:
    ends = [t for t in (r.terminated_at, r.preempted_at, r.exited.at if r.exited else None) if t]
    return min(ends) if ends else None


def usage(state: FleetState, now: float) -> dict[tuple[str, str], Usage]:
    """(cloud, spot | on_demand) -> hours and dollars of every replica from launch to its end."""
    out: dict[tuple[str, str], Usage] = {}
    for svc in state.services.values():
        for r in svc.replicas.values():
            if r.launched_at is None:
                continue
            end = replica_end(r)
            hours = max(0.0, ((end if end is not None else now) - r.launched_at) / 3600.0)
            key = (r.placement.cloud or "unknown", "spot" if r.placement.use_spot else "on_demand")
            was = out.get(key, Usage())
            out[key] = Usage(was.hours + hours, was.cost + hours * (r.placement.price_per_hour or 0.0))
    return out


class UsageCollector(Collector):
    """``stratus_instance_hours`` / ``stratus_instance_cost_dollars`` from the fleet at scrape time."""

    def __init__(self, fleet: Callable[[], FleetState], clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        hours = GaugeMetricFamily(
            "stratus_instance_hours", "Instance-hours of launched replicas", labels=["cloud", "capacity"]
        )
        cost = GaugeMetricFamily(
            "stratus_instance_cost_dollars", "Cost of those instance-hours at the catalog price",
            labels=["cloud", "capacity"],
        )  # fmt: skip
        try:
            state = self.fleet()
        except AssertionError:  # the host has not started yet
            state = FleetState()
        for (cloud, capacity), u in sorted(usage(state, self.clock()).items()):
            hours.add_metric([cloud, capacity], u.hours)
            cost.add_metric([cloud, capacity], u.cost)
        yield hours
        yield cost


def watch_usage(fleet: Callable[[], FleetState]) -> None:
    """Report instance-hours and cost on this process's /metrics (the provisioner's)."""
    REGISTRY.register(UsageCollector(fleet))
