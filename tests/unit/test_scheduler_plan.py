from __future__ import annotations

from typing import Any

import pytest
from fleet_builders import NAME, R, build, spec

from libs.events.types import (
    Event,
    ReplicaLaunchFailed,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
    ServiceDownRequested,
    ServiceTerminated,
    TrafficSwitched,
)
from libs.fleet import FleetState, ServiceState, fold_events, service_status
from services.scheduler.plan import (
    Action,
    MarkServiceTerminated,
    RequestTermination,
    SchedulerConfig,
    ScheduleReplica,
    SetTrafficVersions,
    plan,
    to_event,
)

NO_BACKOFF = SchedulerConfig(retry_backoff_seconds=0.0)
NOW = 1000.0


def summary(actions: list[Action]) -> list[tuple[Any, ...]]:
    """Compact form: ("S", id, version, spot) / ("T", id, drained) / ("X",) / ("V", versions)."""
    out: list[tuple[Any, ...]] = []
    for a in actions:
        if isinstance(a, ScheduleReplica):
            out.append(("S", a.replica_id, a.version, a.placement.use_spot))
        elif isinstance(a, RequestTermination):
            out.append(("T", a.replica_id, a.drain_seconds > 0))
        elif isinstance(a, MarkServiceTerminated):
            out.append(("X",))
        else:
            out.append(("V", a.versions))
    return out


def scale(target: int, spot: int = 0, on_demand: int = 0) -> ScaleDecided:
    return ScaleDecided(service=NAME, target=target, spot=spot, on_demand=on_demand)


AUTO = spec(min_replicas=1, max_replicas=5, qps=1.0)
SPOT_DYNAMIC = spec(2, use_spot=True, dynamic=True)
FAILS = [R(1, "FAILED"), R(2, "FAILED_INITIAL_DELAY"), R(3, "FAILED_PROVISION")]
V1_READY = [R(1, "READY"), R(2, "READY")]
ROLLING = [(2, "rolling", spec(2))]
BLUE_GREEN = [(2, "blue_green", spec(2))]


def _done(*rids: int, error: str = "") -> list[Event]:
    out: list[Event] = []
    for rid in rids:
        out += [
            ReplicaTerminationRequested(service=NAME, replica_id=rid),
            ReplicaTerminated(service=NAME, replica_id=rid, cleanup_error=error),
        ]
    return out


CASES: list[tuple[str, dict[str, Any], SchedulerConfig, list[tuple[Any, ...]]]] = [
    ("fresh fixed service", {"the_spec": spec(2)}, NO_BACKOFF, [("S", 1, 1, False), ("S", 2, 1, False)]),
    ("steady", {"replicas": [R(1, "READY"), R(2, "STARTING")]}, NO_BACKOFF, []),
    ("not ready still counts", {"replicas": [R(1, "READY"), R(2, "NOT_READY")]}, NO_BACKOFF, []),
    ("replace failed", {"replicas": [R(1, "READY"), R(2, "FAILED_PROBING")]}, NO_BACKOFF,
     [("T", 2, False), ("S", 3, 1, False)]),
    ("failed already cleaned up", {"replicas": [R(1, "READY"), R(2, "FAILED")], "extra": _done(2)},
     NO_BACKOFF, [("S", 3, 1, False)]),
    ("preempted spot", {"the_spec": spec(2, use_spot=True),
                        "replicas": [R(1, "READY", spot=True), R(2, "PREEMPTED", spot=True)]}, NO_BACKOFF,
     [("T", 2, False), ("S", 3, 1, True)]),
    ("shutting down does not count", {"replicas": [R(1, "READY"), R(2, "SHUTTING_DOWN")]}, NO_BACKOFF,
     [("S", 3, 1, False)]),
    ("scale down least useful first", {
        "the_spec": AUTO, "scale": scale(1),
        "replicas": [R(1, "READY"), R(2, "READY"), R(3, "STARTING"), R(4, "PENDING")]}, NO_BACKOFF,
     [("T", 4, False), ("T", 3, False), ("T", 2, True)]),
    ("scale down not-ready before ready", {
        "the_spec": AUTO, "scale": scale(2),
        "replicas": [R(1, "READY"), R(2, "NOT_READY"), R(3, "READY")]}, NO_BACKOFF, [("T", 2, False)]),
    ("scale down newest ready first", {
        "the_spec": AUTO, "scale": scale(1), "replicas": [R(1, "READY"), R(2, "READY")]}, NO_BACKOFF,
     [("T", 2, True)]),
    ("autoscale target up", {"the_spec": AUTO, "scale": scale(3), "replicas": [R(1, "READY")]}, NO_BACKOFF,
     [("S", 2, 1, False), ("S", 3, 1, False)]),
    ("autoscale target clipped to bounds", {"the_spec": AUTO, "scale": scale(99)}, SchedulerConfig(),
     [("S", i, 1, False) for i in range(1, 5)]),
    ("no decision yet: min_replicas", {"the_spec": AUTO}, NO_BACKOFF, [("S", 1, 1, False)]),
    ("bounded launches", {"the_spec": spec(10)}, SchedulerConfig(max_concurrent_launches=3),
     [("S", 1, 1, False), ("S", 2, 1, False), ("S", 3, 1, False)]),
    ("bounded launches count in-flight",
     {"the_spec": spec(10), "replicas": [R(1, "PENDING"), R(2, "PROVISIONING"), R(3, "STARTING")]},
     SchedulerConfig(max_concurrent_launches=3), [("S", 4, 1, False)]),
    ("retry waits for backoff", {"the_spec": spec(1), "replicas": [R(1, "FAILED")]},
     SchedulerConfig(retry_backoff_seconds=5000.0, max_retry_backoff_seconds=5000.0), [("T", 1, False)]),
    ("retry after backoff", {"the_spec": spec(1), "replicas": [R(1, "FAILED")]},
     SchedulerConfig(retry_backoff_seconds=5.0), [("T", 1, False), ("S", 2, 1, False)]),
    ("backoff: gave up", {"the_spec": spec(1), "replicas": FAILS}, NO_BACKOFF,
     [("T", 1, False), ("T", 2, False), ("T", 3, False)]),
    ("backoff threshold configurable", {"the_spec": spec(1), "replicas": FAILS},
     SchedulerConfig(retry_backoff_seconds=0.0, max_consecutive_failures=4),
     [("T", 1, False), ("T", 2, False), ("T", 3, False), ("S", 4, 1, False)]),
    ("capacity failures keep retrying", {"the_spec": spec(1), "extra": [
        e for rid in (1, 2, 3, 4) for e in (
            ReplicaScheduled(service=NAME, replica_id=rid),
            ReplicaLaunchFailed(service=NAME, replica_id=rid, kind="capacity"),
            ReplicaTerminationRequested(service=NAME, replica_id=rid),
            ReplicaTerminated(service=NAME, replica_id=rid))]}, NO_BACKOFF, [("S", 5, 1, False)]),
    ("down", {"replicas": [R(1, "READY"), R(2, "FAILED"), R(3, "SHUTTING_DOWN")],
              "extra": [ServiceDownRequested(service=NAME)]}, NO_BACKOFF, [("T", 2, False), ("T", 1, True)]),
    ("down waits for terminations", {"replicas": [R(1, "READY"), R(2, "READY")],
                                     "extra": [ServiceDownRequested(service=NAME), *_done(1),
                                               ReplicaTerminationRequested(service=NAME, replica_id=2)]},
     NO_BACKOFF, []),
    ("down done", {"replicas": [R(1, "READY"), R(2, "FAILED")],
                   "extra": [ServiceDownRequested(service=NAME), *_done(1), *_done(2)]},
     NO_BACKOFF, [("X",)]),
    ("down done despite cleanup failure",
     {"replicas": [R(1, "READY")], "extra": [ServiceDownRequested(service=NAME), *_done(1, error="x")]},
     NO_BACKOFF, [("X",)]),
    ("terminated service", {"replicas": [], "extra": [ServiceDownRequested(service=NAME),
                                                      ServiceTerminated(service=NAME)]}, NO_BACKOFF, []),
    # rolling update
    ("rolling: launch new set", {"replicas": V1_READY, "updates": ROLLING}, NO_BACKOFF,
     [("S", 3, 2, False), ("S", 4, 2, False)]),
    ("rolling: one new ready replaces one old", {
        "replicas": [*V1_READY, R(3, "READY", version=2), R(4, "STARTING", version=2)], "updates": ROLLING},
     NO_BACKOFF, [("T", 2, True)]),
    ("rolling: old not-ready goes first", {
        "replicas": [R(1, "READY"), R(2, "NOT_READY"), R(3, "READY", version=2), R(4, "STARTING", version=2)],
        "updates": ROLLING}, NO_BACKOFF, [("T", 2, False)]),
    ("rolling: done", {
        "replicas": [*V1_READY, R(3, "READY", version=2), R(4, "READY", version=2)], "updates": ROLLING},
     NO_BACKOFF, [("T", 2, True), ("T", 1, True)]),
    # blue-green update
    ("blue-green: launch new set", {"replicas": V1_READY, "updates": BLUE_GREEN}, NO_BACKOFF,
     [("S", 3, 2, False), ("S", 4, 2, False)]),
    ("blue-green: waits for min_replicas ready", {
        "replicas": [*V1_READY, R(3, "READY", version=2), R(4, "STARTING", version=2)],
        "updates": BLUE_GREEN}, NO_BACKOFF, []),
    ("blue-green: old set is maintained", {
        "replicas": [R(1, "READY"), R(2, "PREEMPTED"), R(3, "READY", version=2), R(4, "STARTING", version=2)],
        "updates": BLUE_GREEN}, NO_BACKOFF, [("T", 2, False), ("S", 5, 1, False)]),
    ("blue-green: switch", {
        "replicas": [*V1_READY, R(3, "READY", version=2), R(4, "READY", version=2)], "updates": BLUE_GREEN},
     NO_BACKOFF, [("V", (2,)), ("T", 1, True), ("T", 2, True)]),
    ("blue-green 2 -> 3: only new replicas launch (the old set keeps its own size)", {
        "replicas": V1_READY, "updates": [(2, "blue_green", spec(3))]}, NO_BACKOFF,
     [("S", 3, 2, False), ("S", 4, 2, False), ("S", 5, 2, False)]),
    ("blue-green 3 -> 2: the old set is kept whole until the switch", {
        "the_spec": spec(3), "replicas": [*V1_READY, R(3, "READY")], "updates": BLUE_GREEN}, NO_BACKOFF,
     [("S", 4, 2, False), ("S", 5, 2, False)]),
    ("blue-green 2 -> 3: a lost old replica is replaced by one old replica", {
        "replicas": [R(1, "READY"), R(2, "PREEMPTED")], "updates": [(2, "blue_green", spec(3))]},
     SchedulerConfig(retry_backoff_seconds=0.0, max_concurrent_launches=10),
     [("T", 2, False), ("S", 3, 2, False), ("S", 4, 2, False), ("S", 5, 2, False), ("S", 6, 1, False)]),
    ("blue-green: after switch", {
        "replicas": [R(3, "READY", version=2), R(4, "READY", version=2)], "updates": BLUE_GREEN,
        "extra": [TrafficSwitched(service=NAME, versions=[2])]}, NO_BACKOFF, []),
    ("blue-green autoscaled: 1 ready is enough with min 1", {
        "the_spec": AUTO, "scale": scale(2),
        "replicas": [*V1_READY, R(3, "READY", version=2), R(4, "STARTING", version=2)],
        "updates": [(2, "blue_green", AUTO)]}, NO_BACKOFF, [("V", (2,)), ("T", 1, True), ("T", 2, True)]),
    # broken new version
    ("rolling broken update keeps old", {
        "replicas": [*V1_READY, R(3, "FAILED", version=2), R(4, "FAILED", version=2),
                     R(5, "FAILED_INITIAL_DELAY", version=2), R(6, "STARTING", version=2)],
        "updates": ROLLING}, NO_BACKOFF,
     [("T", 3, False), ("T", 4, False), ("T", 5, False), ("T", 6, False)]),
    ("rolling broken update replaces old failures with old", {
        "replicas": [R(1, "READY"), R(2, "FAILED"), R(3, "FAILED", version=2), R(4, "FAILED", version=2),
                     R(5, "FAILED", version=2)],
        "updates": ROLLING, "extra": _done(2, 3, 4, 5)}, NO_BACKOFF, [("S", 6, 1, False)]),
    ("blue-green broken update keeps old", {
        "replicas": [*V1_READY, R(3, "FAILED", version=2), R(4, "FAILED", version=2),
                     R(5, "FAILED", version=2)],
        "updates": BLUE_GREEN, "extra": _done(3, 4, 5)}, NO_BACKOFF, []),
    ("blue-green after a broken rolling update maintains the old set with the working version", {
        "replicas": [R(1, "READY"), R(2, "FAILED"), R(3, "FAILED", version=2), R(4, "FAILED", version=2),
                     R(5, "FAILED", version=2), R(6, "STARTING", version=3)],
        "updates": [*ROLLING, (3, "blue_green", spec(2))], "extra": _done(2, 3, 4, 5)}, NO_BACKOFF,
     [("S", 7, 3, False), ("S", 8, 1, False)]),
    # spot with on-demand fallback
    ("dynamic fallback: spot not ready", {"the_spec": SPOT_DYNAMIC}, NO_BACKOFF,
     [("S", 1, 1, True), ("S", 2, 1, True), ("S", 3, 1, False), ("S", 4, 1, False)]),
    ("dynamic fallback: spot ready removes on-demand", {
        "the_spec": SPOT_DYNAMIC,
        "replicas": [R(1, "READY", spot=True), R(2, "READY", spot=True), R(3, "READY"), R(4, "STARTING")]},
     NO_BACKOFF, [("T", 4, False), ("T", 3, True)]),
    ("base fallback", {"the_spec": spec(3, use_spot=True, base_od=1)}, NO_BACKOFF,
     [("S", 1, 1, True), ("S", 2, 1, True), ("S", 3, 1, False)]),
    ("autoscaler's split is followed", {
        "the_spec": spec(min_replicas=1, max_replicas=4, qps=1.0, use_spot=True, dynamic=True),
        "scale": scale(2, spot=2, on_demand=1)}, NO_BACKOFF,
     [("S", 1, 1, True), ("S", 2, 1, True), ("S", 3, 1, False)]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "kwargs", "config", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan(
    case: str, kwargs: dict[str, Any], config: SchedulerConfig, expected: list[tuple[Any, ...]]
) -> None:
    assert summary(plan(build(**kwargs), NOW, config)) == expected


def _run(svc: ServiceState, now: float, config: SchedulerConfig) -> tuple[ServiceState, list[Action]]:
    actions = plan(svc, now, config)
    events = [(to_event(NAME, a), now) for a in actions]
    return fold_events(events, FleetState(services={NAME: svc})).services[NAME], actions


def test_plan_is_level_triggered_and_ids_never_reused() -> None:
    svc = build(spec(2), [R(1, "READY"), R(2, "FAILED")])
    svc, first = _run(svc, NOW, NO_BACKOFF)
    assert summary(first) == [("T", 2, False), ("S", 3, 1, False)]
    svc, again = _run(svc, NOW + 1, NO_BACKOFF)
    assert again == []  # nothing new once the actions are recorded
    assert svc.next_replica_id == 4
    assert service_status(svc).status == "READY"


def test_gave_up_until_update() -> None:
    svc = build(spec(1), FAILS, extra=_done(1, 2, 3))
    assert plan(svc, NOW, NO_BACKOFF) == []
    assert service_status(svc).status == "FAILED"
    # `stratus update` with a fixed spec: the new version launches (failures were version 1's).
    fixed = build(spec(1), FAILS, extra=_done(1, 2, 3), updates=[(2, "rolling", spec(1))])
    assert summary(plan(fixed, NOW, NO_BACKOFF)) == [("S", 4, 2, False)]
    # Version 1's failed replicas are still shown, none READY: SkyServe's FAILED, no longer given up.
    fixed_status = service_status(fixed)
    assert fixed_status.status == "FAILED" and "stopped launching" not in fixed_status.reason


def test_to_event_round_trip() -> None:
    actions: list[Action] = [
        SetTrafficVersions(versions=(2,), reason="r"),
        MarkServiceTerminated(reason="down"),
        RequestTermination(replica_id=3, reason="x", drain_seconds=5.0, purge=True),
    ]
    events = [to_event(NAME, a) for a in actions]
    assert isinstance(events[0], TrafficSwitched) and events[0].versions == [2]
    assert isinstance(events[1], ServiceTerminated) and events[1].reason == "down"
    assert (
        isinstance(events[2], ReplicaTerminationRequested)
        and events[2].purge
        and events[2].drain_seconds == 5.0
    )
