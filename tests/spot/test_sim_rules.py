"""The simulator's rules on tiny synthetic traces: cold start, capacity, preemption, cost."""

from __future__ import annotations

import msgspec
import pytest

from bench.spot.sim import POLICIES, Policy, TickRecord, simulate
from bench.spot.traces import Trace, Zone


def trace(*zones: list[int], gap: float = 30.0) -> Trace:
    """One zone per list of per-tick capacities (gap 30 s: one sample per tick)."""
    names = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    return Trace(
        name="synthetic",
        zones=tuple(
            Zone(name=names[i], cloud="aws", region="us-east-1", gap_seconds=gap, data=tuple(z))
            for i, z in enumerate(zones)
        ),
    )


SPOT_ONLY = POLICIES["round_robin"]


def test_on_demand_cold_start_and_cost() -> None:
    r = simulate(trace([0] * 12), 0, POLICIES["ondemand"], ticks=12, target=2, cold_start=4)
    # Launched at tick 0, READY from tick 4: every accounted tick (4..11) is available.
    assert r.ticks == 8
    assert r.available_ticks == 8
    assert r.ready_sum == 2 * 8
    assert r.on_demand_ticks == 2 * 8 and r.spot_ticks == 0
    assert r.cost == 3.0 * 2 * 8
    assert r.launches == 2 and r.preemptions == 0


def test_cold_start_length_is_respected() -> None:
    # Only 1 spot slot: target 1; with cold start 6 and accounting from tick 6.
    r = simulate(trace([1] * 10), 0, SPOT_ONLY, ticks=10, target=1, cold_start=6)
    assert r.ticks == 4
    assert r.available_ticks == 4
    assert r.cost == 4.0  # one spot replica, cold-starting ticks before 6 are not accounted


def test_launch_above_capacity_fails_and_costs_nothing() -> None:
    r = simulate(trace([1] * 10), 0, SPOT_ONLY, ticks=10, target=2, cold_start=4)
    assert r.launches == 1
    assert r.launch_failures >= 6  # the second replica is retried every tick and always fails
    assert r.available_ticks == 0
    assert r.spot_ticks == 6 and r.cost == 6.0


def test_preemption_removes_the_youngest_and_cold_start_restarts() -> None:
    # Two zones: a holds 1 throughout; b holds 1 until tick 8, then 0 until tick 10, then 1.
    caps_a = [1] * 20
    caps_b = [1] * 8 + [0] * 2 + [1] * 10
    r = simulate(trace(caps_a, caps_b), 0, SPOT_ONLY, ticks=20, target=2, cold_start=4)
    assert r.preemptions == 1
    # Ready 4..7; preempted at 8; relaunched in b at 10 (ready from 14): unavailable 8..13.
    assert r.available_ticks == (8 - 4) + (20 - 14)
    assert r.spot_ticks == 2 * 16 - 2  # b is empty on ticks 8 and 9


def test_replica_preempted_during_cold_start_never_becomes_ready() -> None:
    caps = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    r = simulate(trace(caps), 0, SPOT_ONLY, ticks=10, target=1, cold_start=4)
    assert r.preemptions == 1
    assert r.available_ticks == 0
    assert r.ready_sum == 0


def test_trace_samples_fill_several_ticks_and_wrap() -> None:
    # gap 60 s: each sample covers 2 ticks; 3 samples = 6 ticks, then the trace wraps.
    t = trace([1, 0, 1], gap=60.0)
    assert [t.zones[0].capacity(i) for i in range(8)] == [1, 1, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("name", ["skyserve", "stratus"])
def test_fallback_policies_keep_the_service_up_with_on_demand(name: str) -> None:
    # No spot at all: dynamic fallback runs on-demand replicas; availability after cold start.
    r = simulate(trace([0] * 30, [0] * 30), 0, POLICIES[name], ticks=30, target=2, cold_start=4)
    assert r.spot_ticks == 0
    # Both start on-demand with the first (failing) spot launches: READY from the cold start on.
    assert r.on_demand_ticks == 2 * 26
    assert r.available_ticks == 26


def test_skyserve_overprovisions_one_spot_and_stratus_drops_it_when_calm() -> None:
    caps = [[4] * 200, [4] * 200, [4] * 200]
    sky = simulate(trace(*caps), 0, POLICIES["skyserve"], ticks=200, target=3, cold_start=4)
    strat = simulate(trace(*caps), 0, POLICIES["stratus"], ticks=200, target=3, cold_start=4)
    assert sky.spot_ticks == 4 * 196 and sky.available_ticks == 196
    assert strat.available_ticks == 196
    # stratus starts with the buffer (nothing known yet), then runs exactly the 3 it needs.
    assert strat.spot_ticks < 4 * 196
    assert strat.cost < sky.cost


def test_unplaceable_spec_is_an_error() -> None:
    bad = msgspec.structs.replace(POLICIES["ondemand"], name="broken")

    class NoGpu(Policy, frozen=True):
        def spec(self, target: int) -> dict[str, object]:
            spec = POLICIES["ondemand"].spec(target)
            spec["resources"] = {**spec["resources"], "accelerators": {"H100": 8}}
            return spec

    assert bad.name == "broken"
    with pytest.raises(RuntimeError, match="no replica was launched"):
        simulate(trace([1] * 10), 0, NoGpu(name="nogpu", use_spot=False), ticks=10, target=1)


def test_record_gives_each_ticks_events_and_ready_count() -> None:
    from libs.events.types import Preempted, ReplicaLaunched

    record: list[TickRecord] = []
    r = simulate(trace([2] * 6 + [1] * 6), 0, SPOT_ONLY, ticks=12, target=2, cold_start=4, record=record)
    assert [x.tick for x in record] == list(range(12))
    launched = [e for x in record for e in x.events if isinstance(e, ReplicaLaunched)]
    assert len(launched) == r.launches == 2
    # Capacity drops to 1 at tick 6: the youngest replica is preempted there, READY falls to 1.
    assert [x.tick for x in record if any(isinstance(e, Preempted) for e in x.events)] == [6]
    assert [x.ready for x in record] == [0, 0, 0, 0, 2, 2, 1, 1, 1, 1, 1, 1]
