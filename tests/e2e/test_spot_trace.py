"""The ``stratus`` spot policy live and in the simulator on the same short trace.

The whole stack runs with the local provider's simulated spot zones
(``$STRATUS_HOME/local-zones.json``, libs/placement/spot_local_zones.py): three zones whose
capacity follows a time-compressed trace (one tick = ``TICK`` seconds); a spot launch into a
full zone fails with a capacity error and spot replicas above a zone's capacity are preempted.
``bench.spot.sim.simulate`` runs the same trace (one tick per sample, the cold start one tick:
a local replica is READY within a few seconds) with the same policy code. Both must agree on
where spot replicas ran (launches per zone, within one), on the preemptions (zone ``local-a``
empties at tick 6, taking our replica there), and on on-demand covering the gap.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.spot.sim import POLICIES, simulate
from bench.spot.traces import Trace, Zone
from libs.events.types import Preempted, ReplicaLaunched, ReplicaScheduled

from .conftest import Stack, running_stack
from .spot import SPEC, settled

NAME = "spottrace"
TICK = 3.0
TICKS = 14
ZONES = {
    "local-a": [2] * 6 + [0] * 8,
    "local-b": [1] * TICKS,
    "local-c": [0] * 3 + [3] * 11,
}


@pytest.fixture(scope="module")
def zoned_stack(tmp_path_factory: pytest.TempPathFactory, nats_url: str, stack_db: str) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stratus-zones")
    (home / "local-zones.json").write_text(json.dumps({"tick_seconds": TICK, "zones": ZONES}))
    # The simulator retries a failed launch every tick: no growing backoff here either.
    knobs = {
        "STRATUS_MONITOR_INTERVAL": "0.3",
        "STRATUS_DRAIN_SECONDS": "1",
        "STRATUS_RETRY_BACKOFF_SECONDS": "0.5",
    }
    with running_stack(home, nats_url, stack_db, knobs) as s:
        yield s


def simulated() -> list[Any]:
    zones = [Zone(name=z, cloud="local", region="local", gap_seconds=30.0, data=tuple(c))
             for z, c in ZONES.items()]  # fmt: skip
    trace = Trace(name="e2e", zones=tuple(zones))
    record: list[Any] = []
    simulate(trace, 0, POLICIES["stratus"], ticks=TICKS, target=2, cold_start=1, record=record)
    return [e for x in record for e in x.events]


def summary_sim(events: list[Any]) -> dict[str, Any]:
    scheduled = {e.replica_id: e.placement for e in events if isinstance(e, ReplicaScheduled)}
    launched = [scheduled[e.replica_id] for e in events if isinstance(e, ReplicaLaunched)]
    return {
        "first": [p.zone for p in scheduled.values() if p.use_spot][:3],
        "spot_zones": Counter(p.zone for p in launched if p.use_spot),
        "on_demand": sum(1 for p in launched if not p.use_spot),
        "preempted": Counter(e.placement.zone for e in events if isinstance(e, Preempted)),
    }


def summary_live(events: list[dict[str, Any]]) -> dict[str, Any]:
    scheduled = {
        e["data"]["replica_id"]: e["data"]["placement"] for e in events if e["type"] == "ReplicaScheduled"
    }
    launched = [scheduled[e["data"]["replica_id"]] for e in events if e["type"] == "ReplicaLaunched"]
    first = [p["zone"] for p in scheduled.values() if p["use_spot"]][:3]
    return {
        "first": first,
        "spot_zones": Counter(p["zone"] for p in launched if p["use_spot"]),
        "on_demand": sum(1 for p in launched if not p["use_spot"]),
        "preempted": Counter(e["data"]["placement"]["zone"] for e in events if e["type"] == "Preempted"),
    }


def test_live_run_does_what_the_simulator_says(zoned_stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "spot.yaml"
    spec.write_text(SPEC)
    r = zoned_stack.cli("up", str(spec), "-n", NAME, "-y", "--async", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr + zoned_stack.logs_tail()

    def back(svc: dict[str, Any]) -> bool:
        # After local-a emptied (tick 6): spot back to 3 READY (b and c), no on-demand left.
        preempted = any(e["type"] == "Preempted" for e in zoned_stack.events(NAME))
        return preempted and settled(3)(svc)

    what = "preempted in local-a, then 3 spot READY and no on-demand"
    svc = zoned_stack.wait(NAME, back, timeout=TICKS * TICK + 40, what=what)
    live = summary_live(zoned_stack.events(NAME))
    sim = summary_sim(simulated())
    detail = f"live {live}, simulator {sim}"
    # The same preemptions: local-a empties at tick 6 and takes our replica there.
    assert live["preempted"] == sim["preempted"] == Counter({"local-a": 1}), detail
    # The same first choices (nothing known yet: spread over the catalog's zones).
    assert live["first"] == sim["first"] == ["local-a", "local-b", "local-c"], detail
    # Spot ran in the same zones, launches per zone within one (the live clock is not exact).
    assert set(live["spot_zones"]) == set(sim["spot_zones"]), detail
    assert all(abs(live["spot_zones"][z] - sim["spot_zones"][z]) <= 1 for z in sim["spot_zones"]), detail
    # On-demand covered the start-up and the preemption in both.
    assert live["on_demand"] >= 1 and sim["on_demand"] >= 1, detail
    assert abs(live["on_demand"] - sim["on_demand"]) <= 2, detail
    zones_now = sorted(x["zone"] for x in svc["replicas"] if x["status"] == "READY")
    assert "local-a" not in zones_now, zones_now
