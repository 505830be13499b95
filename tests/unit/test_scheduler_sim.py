"""Closed-loop checks: plan + fold + a toy world that advances replicas one stage per tick."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Literal

import pytest
from fleet_builders import NAME, spec

from libs.events.types import (
    EndpointAssigned,
    Event,
    Preempted,
    ReplicaLaunched,
    ReplicaProcessExited,
    ReplicaProvisioningStarted,
    ReplicaReady,
    ReplicaScheduled,
    ReplicaTerminated,
    ServiceDownRequested,
    ServiceRequested,
    ServiceUpdateRequested,
)
from libs.fleet import FleetState, ServiceState, fold_events, replica_status, service_status
from services.scheduler.plan import SchedulerConfig, plan, to_event

CONFIG = SchedulerConfig(retry_backoff_seconds=0.0, max_concurrent_launches=2)


def world(svc: ServiceState, broken_versions: Collection[int]) -> list[Event]:
    out: list[Event] = []
    for r in svc.replicas.values():
        rid, status = r.replica_id, replica_status(r)
        if r.termination is not None and r.terminated_at is None:
            out.append(ReplicaTerminated(service=NAME, replica_id=rid))
        elif status == "PENDING":
            out.append(ReplicaProvisioningStarted(service=NAME, replica_id=rid))
        elif status == "PROVISIONING":
            out.append(ReplicaLaunched(service=NAME, replica_id=rid, instance_id=f"i{rid}", url=f"u{rid}"))
        elif status == "STARTING":
            if r.version in broken_versions:
                out.append(ReplicaProcessExited(service=NAME, replica_id=rid, exit_code=1))
            else:
                out.append(ReplicaReady(service=NAME, replica_id=rid, version=r.version))
    return out


def serving(svc: ServiceState) -> int:
    traffic = set(svc.traffic_versions)
    return sum(1 for r in svc.replicas.values() if replica_status(r) == "READY" and r.version in traffic)


Hook = Callable[[int, ServiceState], list[Event]]


def simulate(
    the_spec: dict[str, Any], ticks: int, hook: Hook, broken: Collection[int] = frozenset()
) -> tuple[ServiceState, list[int], set[int]]:
    state = fold_events(
        [
            (ServiceRequested(service=NAME, spec=the_spec), 0.0),
            (EndpointAssigned(service=NAME, endpoint="e"), 0.0),
        ]
    )
    history: list[int] = []
    ids: set[int] = set()
    for tick in range(ticks):
        now = 10.0 * (tick + 1)
        svc = state.services[NAME]
        events = [to_event(NAME, a) for a in plan(svc, now, CONFIG)]
        for e in events:
            if isinstance(e, ReplicaScheduled):
                assert e.replica_id not in ids, "replica id reused"
                ids.add(e.replica_id)
        state = fold_events([(e, now) for e in events], state)
        svc = state.services[NAME]
        state = fold_events([(e, now + 5) for e in [*world(svc, broken), *hook(tick, svc)]], state)
        history.append(serving(state.services[NAME]))
    return state.services[NAME], history, ids


def nothing(tick: int, svc: ServiceState) -> list[Event]:
    return []


def update_at(tick_no: int, mode: Literal["rolling", "blue_green"]) -> Hook:
    def hook(tick: int, svc: ServiceState) -> list[Event]:
        if tick != tick_no:
            return []
        return [ServiceUpdateRequested(service=NAME, version=2, spec=spec(3), mode=mode)]

    return hook


def test_converges_to_fixed_count() -> None:
    svc, history, _ = simulate(spec(3), 8, nothing)
    assert history[-1] == 3
    assert service_status(svc).status == "READY"


@pytest.mark.parametrize("mode", ["rolling", "blue_green"])
def test_update_never_drops_below_target(mode: Literal["rolling", "blue_green"]) -> None:
    svc, history, _ = simulate(spec(3), 20, update_at(6, mode))
    first_full = history.index(3)
    assert min(history[first_full:]) >= 3, history
    assert {r.version for r in svc.replicas.values()} == {2}
    assert len(svc.replicas) == 3 and service_status(svc).status == "READY"


@pytest.mark.parametrize("mode", ["rolling", "blue_green"])
def test_broken_update_keeps_serving_old_version(mode: Literal["rolling", "blue_green"]) -> None:
    svc, history, _ = simulate(spec(3), 25, update_at(6, mode), broken={2})
    assert min(history[history.index(3) :]) >= 3, history
    alive = [r for r in svc.replicas.values() if replica_status(r) == "READY"]
    assert {r.version for r in alive} == {1} and len(alive) == 3
    report = service_status(svc)
    assert report.status == "READY" and "version 2 failed" in report.reason
    assert svc.versions[2].consecutive_failures == 3  # stopped at the threshold


def test_preemptions_are_replaced_with_fresh_ids() -> None:
    def preempt(tick: int, svc: ServiceState) -> list[Event]:
        ready = sorted(r.replica_id for r in svc.replicas.values() if replica_status(r) == "READY")
        return [Preempted(service=NAME, replica_id=ready[0])] if tick in (6, 9) and ready else []

    svc, history, ids = simulate(spec(2, use_spot=True), 16, preempt)
    assert history[-1] == 2 and len(ids) == 4
    assert all(r.placement.use_spot for r in svc.replicas.values())


def test_down_terminates_everything() -> None:
    def down(tick: int, svc: ServiceState) -> list[Event]:
        return [ServiceDownRequested(service=NAME)] if tick == 6 else []

    svc, _, _ = simulate(spec(3), 10, down)
    assert svc.terminated and not svc.replicas
    assert service_status(svc).status == "TERMINATED"


def test_broken_first_version_fails() -> None:
    svc, history, ids = simulate(spec(2), 15, nothing, broken={1})
    assert max(history) == 0 and len(ids) == 4  # 3 failures + 1 that was in flight (2 at a time)
    assert service_status(svc).status == "FAILED"
    assert plan(svc, 1e9, CONFIG) == []


def test_state_is_rebuildable_mid_run() -> None:
    """The projection folded in one go equals the incrementally built one (audit replay)."""
    events: list[tuple[Event, float]] = [(ServiceRequested(service=NAME, spec=spec(2)), 0.0)]
    state = fold_events(events)
    for tick in range(6):
        now = 10.0 * (tick + 1)
        new = [(to_event(NAME, a), now) for a in plan(state.services[NAME], now, CONFIG)]
        state = fold_events(new, state)
        new2 = [(e, now + 5) for e in world(state.services[NAME], set())]
        state = fold_events(new2, state)
        events += new + new2
    assert fold_events(events) == FleetState(services=state.services)
