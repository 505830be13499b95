from __future__ import annotations

import importlib
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from fleet_builders import NAME, R, build, replica_events, spec

from libs.events.envelope import RecordedEvent
from libs.events.types import (
    CloudsChecked,
    Event,
    Placement,
    Preempted,
    QpsSampled,
    ReplicaFailed,
    ReplicaProcessExited,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
    ServiceDownRequested,
    ServiceRequested,
    ServiceTerminated,
    ServiceUpdateRequested,
    TrafficSwitched,
    event_tag,
)
from libs.fleet import FleetState, apply, apply_event, fold, fold_events, replica_status


def _records(events: list[Event]) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            event_id=uuid.uuid4(),
            stream_id=f"service-{e.service}",
            version=i + 1,
            position=i + 1,
            event_type=event_tag(e),
            event=e,
            occurred_at=datetime.fromtimestamp(1_700_000_000 + i, UTC),
        )
        for i, e in enumerate(events)
    ]


LIFE: list[Event] = [
    ServiceRequested(service=NAME, spec=spec(2)),
    *replica_events(R(1, "READY")),
    *replica_events(R(2, "NOT_READY")),
    ServiceRequested(service="other", spec=spec(1)),
    ReplicaScheduled(service="other", replica_id=1),
    ScaleDecided(service=NAME, target=3, reason="qps"),
]


def test_apply_is_pure_and_matches_fold() -> None:
    records = _records(LIFE)
    state = FleetState()
    snapshots = []
    for rec in records:
        before = msgspec.json.encode(state)
        new = apply(state, rec)
        assert msgspec.json.encode(state) == before  # input untouched
        snapshots.append(new)
        state = new
    folded = fold(records)
    assert msgspec.json.encode(folded) == msgspec.json.encode(state)
    assert folded.position == len(records)
    # Folding from a mid-way snapshot continues identically (and leaves the snapshot alone).
    mid = snapshots[5]
    mid_bytes = msgspec.json.encode(mid)
    assert msgspec.json.encode(fold(records[6:], initial=mid)) == msgspec.json.encode(folded)
    assert msgspec.json.encode(mid) == mid_bytes


def test_fold_records_service_and_replica_facts() -> None:
    state = fold(_records(LIFE))
    svc = state.services[NAME]
    assert svc.scale is not None and svc.scale.target == 3
    assert svc.next_replica_id == 3
    assert replica_status(svc.replicas[1]) == "READY"
    assert svc.replicas[1].url == "http://r1:8080"
    assert replica_status(svc.replicas[2]) == "NOT_READY"
    assert svc.replicas[2].not_ready_reason == "HTTP 500"
    assert svc.latest.first_ready_at is not None
    assert set(state.services) == {NAME, "other"}


def test_updates_and_traffic() -> None:
    svc = build(spec(2), updates=[(2, "rolling", spec(2)), (3, "blue_green", spec(3))])
    assert svc.latest_version == 3
    assert svc.traffic_versions == (1, 2)  # blue-green waits for TrafficSwitched
    assert svc.versions[3].mode == "blue_green"
    assert svc.policy.autoscale.min_replicas == 3
    switched = fold_events(
        [(TrafficSwitched(service=NAME, versions=[3]), 20.0)], FleetState(services={NAME: svc})
    )
    assert switched.services[NAME].traffic_versions == (3,)


def test_clean_termination_drops_replica_but_failed_ones_stay() -> None:
    svc = build(
        spec(2),
        [R(1, "READY"), R(2, "FAILED"), R(3, "PREEMPTED", spot=True)],
        extra=[
            ReplicaTerminationRequested(service=NAME, replica_id=1),
            ReplicaTerminated(service=NAME, replica_id=1),
            ReplicaTerminationRequested(service=NAME, replica_id=2),
            ReplicaTerminated(service=NAME, replica_id=2),
            ReplicaTerminationRequested(service=NAME, replica_id=3),
            ReplicaTerminated(service=NAME, replica_id=3),
        ],
    )
    assert list(svc.replicas) == [2]
    assert replica_status(svc.replicas[2]) == "FAILED"
    assert svc.next_replica_id == 4


def test_failures_while_draining_are_not_failures() -> None:
    svc = build(
        spec(1),
        [R(1, "SHUTTING_DOWN")],
        extra=[
            ReplicaFailed(service=NAME, replica_id=1, status="FAILED_PROBING"),
            ReplicaProcessExited(service=NAME, replica_id=1, exit_code=143),
        ],
    )
    assert replica_status(svc.replicas[1]) == "SHUTTING_DOWN"
    assert svc.consecutive_failures == 0


def test_preemption_is_not_a_failure_and_remembers_the_zone() -> None:
    svc = build(spec(1, use_spot=True), [R(1, "READY", spot=True, zone="z1")], extra=[
        Preempted(service=NAME, replica_id=1, placement=Placement(cloud="aws", zone="z1", use_spot=True)),
    ])  # fmt: skip
    assert replica_status(svc.replicas[1]) == "PREEMPTED"
    assert svc.consecutive_failures == 0
    assert [(z.cloud, z.zone, z.kind) for z in svc.zone_events] == [("aws", "z1", "preempted")]


def test_double_failure_counts_once() -> None:
    svc = build(spec(1), [R(1, "FAILED")], extra=[ReplicaFailed(service=NAME, replica_id=1, status="FAILED")])
    assert svc.consecutive_failures == 1


def test_replica_ids_survive_a_new_incarnation() -> None:
    svc = build(spec(1), [R(1, "READY"), R(2, "READY")], extra=[
        ServiceDownRequested(service=NAME),
        ServiceTerminated(service=NAME),
        ServiceRequested(service=NAME, spec=spec(1)),
        ReplicaScheduled(service=NAME, replica_id=1),  # stale / bogus: not a new replica id
    ])  # fmt: skip
    assert not svc.terminated
    assert svc.next_replica_id == 3
    assert list(svc.replicas) == [1]  # recorded, but the scheduler never reuses ids itself


def test_duplicate_events_and_unknown_services_are_ignored() -> None:
    state = fold_events(
        [
            (ReplicaScheduled(service="ghost", replica_id=1), 0.0),
            (ServiceRequested(service=NAME, spec=spec(1)), 1.0),
            (ServiceRequested(service=NAME, spec=spec(5)), 2.0),
            (ServiceUpdateRequested(service=NAME, version=1, spec=spec(7)), 3.0),
            (ReplicaTerminated(service=NAME, replica_id=42), 4.0),
        ]
    )
    assert set(state.services) == {NAME}
    assert state.services[NAME].policy.autoscale.min_replicas == 1


@pytest.mark.parametrize("at", [datetime.fromtimestamp(100, UTC), 100.0])
def test_apply_event_accepts_datetime_or_seconds(at: datetime | float) -> None:
    state = apply_event(FleetState(), ServiceRequested(service=NAME, spec=spec(1)), at, position=7)
    assert state.services[NAME].created_at == 100.0
    assert state.position == 7


class StrangerRenamed(Event, frozen=True, tag="TestOnlyStrangerRenamed"):
    """An event type this fold has never heard of (as from a newer writer)."""

    replica_id: int
    name: str


def test_unknown_event_types_are_ignored_and_only_advance_the_position() -> None:
    known: list[Event] = [
        ServiceRequested(service=NAME, spec=spec(2)),
        ReplicaScheduled(service=NAME, replica_id=1),
        ScaleDecided(service=NAME, target=2, reason="qps"),
    ]
    strangers: list[Event] = [
        StrangerRenamed(service=NAME, replica_id=1, name="x"),
        StrangerRenamed(service="ghost", replica_id=7, name="y"),
        # Real types that the fleet fold has no use for.
        QpsSampled(service=NAME, router_id="r1", window_start=0.0, window_seconds=10.0, requests=5),
        CloudsChecked(service="", enabled=["aws"]),
    ]
    mixed = [known[0], strangers[0], known[1], strangers[1], strangers[2], known[2], strangers[3]]
    plain = fold_events([(e, 1.0) for e in known])
    assert fold_events([(e, 1.0) for e in mixed]).services == plain.services
    # Through the recorded path (what rebuilds run): the strangers still advance the position.
    records = _records(mixed)
    folded = fold(records)
    assert folded.position == len(mixed)  # the last record's, a stranger's
    assert set(folded.services) == {NAME} and set(folded.services[NAME].replicas) == {1}
    state = FleetState()
    for rec in records:
        state = apply(state, rec)
    assert state == folded


def test_fold_of_a_long_log_copies_each_service_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes a rebuild fast (its speed is measured in bench/fleet/fold.py): a service's
    dicts are copied once per fold, not once per event, and each event costs O(1) struct copies."""
    from bench.fleet.synthetic import synthetic

    # The fold's modules (the name ``fold`` is the function): each copies through msgspec's replace.
    names = ("fold", "fold_base", "fold_replicas")
    fold_modules = [importlib.import_module(f"libs.fleet.{m}") for m in names]
    records = synthetic(20_000, services=50)
    copies: Counter[str] = Counter()
    real_replace = fold_modules[0].replace

    def counting_replace(obj: Any, **changes: Any) -> Any:
        copies["service dicts" if "replicas" in changes else "structs"] += 1
        return real_replace(obj, **changes)

    first_page = fold(records[:10_000])
    for module in fold_modules:
        monkeypatch.setattr(module, "replace", counting_replace)
    # The second page folds onto a state it does not own (as rebuild's pages do): every
    # service it touches is copied once, whatever the number of its events.
    state = fold(records[10_000:], first_page)
    assert len(state.services) == 50 and state.position == 20_000
    assert copies["service dicts"] == 50
    assert copies["structs"] <= 2 * 10_000
    assert fold(records) == state  # and paging changes nothing


def test_drained_is_recorded_only_while_shutting_down() -> None:
    from libs.events.types import ReplicaDrained

    drained = ReplicaDrained(service=NAME, replica_id=1, router_id="r", waited_seconds=1.5)
    ready = build(spec(1), [R(1, "READY")], extra=[drained])
    assert ready.replicas[1].drained_at is None  # not asked to terminate: ignored
    svc = build(spec(1), [R(1, "SHUTTING_DOWN")], extra=[drained, drained])
    rep = svc.replicas[1]
    assert rep.drained_at is not None and replica_status(rep) == "SHUTTING_DOWN"
    first = rep.drained_at
    assert build(spec(1), [R(1, "SHUTTING_DOWN")], extra=[drained, drained]).replicas[1].drained_at == first
