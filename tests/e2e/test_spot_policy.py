"""The ``stratus`` spot policy in the running system: the whole stack with the local provider
acting out a short, time-compressed preemption trace (``stratus debug preempt``), through
the real CLI.

The service is what the simulator runs (bench/spot/sim.py): spot, ``spot_placer:
dynamic_fallback``, 2 needed + 1 overprovisioned, dynamic on-demand fallback. The local
provider has no zones, so no spot launch is "expected to succeed in a quiet zone": the policy
then behaves as in the simulator when every zone failed recently (tests/spot): on-demand covers
the READY deficit and, in trouble, the missing buffer; it is dropped as soon as spot covers the
need again (``od_hold_seconds`` 0), and spot gets its buffer back.

The trace: calm start (no buffer once spot is READY), one preemption (trouble: the buffer comes
back, hedged by on-demand until it is READY), then two preemptions at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Stack
from .spot import SPEC, alive, settled

NAME = "spotpol"


@pytest.fixture(scope="module")
def service(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    spec = Path(tmp_path_factory.mktemp("spotpol")) / "spot.yaml"
    spec.write_text(SPEC)
    r = stack.cli("up", str(spec), "-n", NAME, "-y", "--timeout", "120")
    assert r.returncode == 0, r.stdout + r.stderr + stack.logs_tail()
    # Calm (no preemption yet): the 2 needed, no buffer.
    yield stack.wait(NAME, settled(2), timeout=120, what="2 spot READY and no on-demand")


def scheduled_after(stack: Stack, position: int) -> list[dict[str, Any]]:
    return [e for e in stack.events(NAME) if e["type"] == "ReplicaScheduled" and e["position"] > position]


def preempt(stack: Stack, *replica_ids: int) -> int:
    """Preempt these replicas; returns the log position before the first request."""
    before = int(max(e["position"] for e in stack.events(NAME)))
    if len(replica_ids) == 1:
        r = stack.cli("debug", "preempt", NAME, str(replica_ids[0]), timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    else:  # "at once": straight to the API, ms apart (a CLI process each took seconds under load)
        for rid in replica_ids:
            resp = stack.api("POST", f"/v1/services/{NAME}/replicas/{rid}/preempt")
            assert resp.status_code == 202, resp.text

    def gone(svc: dict[str, Any]) -> bool:
        return not {r["replica_id"] for r in svc["replicas"] if r["status"] == "READY"} & set(replica_ids)

    stack.wait(NAME, gone, timeout=60, what=f"replicas {replica_ids} preempted")
    return before


def test_start_up_runs_the_buffer_and_drops_it_with_on_demand_once_spot_is_ready(
    stack: Stack, service: dict[str, Any]
) -> None:
    events = stack.events(NAME)
    placed = [e["data"]["placement"]["use_spot"] for e in events if e["type"] == "ReplicaScheduled"]
    # Nothing known yet: 3 spot (2 + buffer) first, and on-demand for the need not READY yet
    # (bounded by max_concurrent_launches: the second one may come a round later).
    assert placed[:3] == [True, True, True] and False in placed[3:5], placed
    od = [e["data"]["replica_id"] for e in events
          if e["type"] == "ReplicaScheduled" and not e["data"]["placement"]["use_spot"]]  # fmt: skip
    terminated = {e["data"]["replica_id"] for e in events if e["type"] == "ReplicaTerminationRequested"}
    spot = [e["data"]["replica_id"] for e in events
            if e["type"] == "ReplicaScheduled" and e["data"]["placement"]["use_spot"]]  # fmt: skip
    assert set(od) <= terminated  # dropped once spot covered the need
    assert len(set(spot) & terminated) >= 1  # so is the buffer: nothing preempted us yet
    assert alive(service, False) == []


def test_one_preemption_is_hedged_with_on_demand_until_spot_is_back(
    stack: Stack, service: dict[str, Any]
) -> None:
    svc = stack.service(NAME)
    victim = alive(svc, True)[0]
    before = preempt(stack, victim)
    # Trouble now: the buffer comes back (3 spot READY) and the on-demand hedge goes.
    svc = stack.wait(NAME, settled(3), timeout=120, what="3 spot READY (buffer), no on-demand")
    assert victim not in {r["replica_id"] for r in svc["replicas"]}
    new = scheduled_after(stack, before)
    kinds = sorted(e["data"]["placement"]["use_spot"] for e in new)
    # The replacement spot replica, the buffer, and one on-demand hedging the buffer meanwhile
    # (1 spot READY of 2 needed: one more on-demand for the deficit).
    assert kinds.count(True) == 2 and 1 <= kinds.count(False) <= 2, kinds
    od = next(e["data"]["replica_id"] for e in new if not e["data"]["placement"]["use_spot"])
    reasons = [e["data"]["reason"] for e in stack.events(NAME)
               if e["type"] == "ReplicaTerminationRequested" and e["data"]["replica_id"] == od]  # fmt: skip
    assert reasons and "on-demand" in reasons[0], reasons


def test_two_preemptions_at_once_get_on_demand_for_the_deficit(stack: Stack, service: dict[str, Any]) -> None:
    svc = stack.service(NAME)
    victims = alive(svc, True)[:2]
    before = preempt(stack, *victims)
    svc = stack.wait(NAME, settled(3), timeout=120, what="3 spot READY again after two preemptions")
    new = scheduled_after(stack, before)
    spot = [e for e in new if e["data"]["placement"]["use_spot"]]
    od = [e for e in new if not e["data"]["placement"]["use_spot"]]
    assert len(spot) >= 2, new
    # 1 spot READY of 2 needed: one on-demand for the deficit, one for the buffer (in trouble).
    assert len(od) == 2, new
    assert svc["status"] == "READY"
