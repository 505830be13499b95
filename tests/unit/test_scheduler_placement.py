"""The scheduler's placement: clouds from CloudsChecked, failover on capacity/quota, waiting reasons."""

from __future__ import annotations

from typing import Any

from fleet_builders import NAME, build, spec

from libs.catalog import Offer
from libs.events.types import (
    CloudsChecked,
    Event,
    Placement,
    PlacementUnavailable,
    ReplicaLaunchFailed,
    ReplicaProvisioningStarted,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
)
from libs.fleet import FleetState, ServiceState, fold_events, service_status
from libs.fleet.state import CloudsState
from services.scheduler.plan import (
    Action,
    SchedulerConfig,
    ScheduleReplica,
    WaitForPlacement,
    plan,
    to_event,
)

NOW = 100.0  # the builder records the replicas' events from t=10


def _o(cloud: str, region: str, zone: str, itype: str, acc: str, n: float, od: float, spot: float) -> Offer:
    return Offer(cloud=cloud, region=region, zone=zone, instance_type=itype, accelerator=acc,
                 accelerator_count=n, vcpus=8, memory_gib=32, price=od, spot_price=spot)  # fmt: skip


CATALOG = (
    _o("aws", "us-east-1", "us-east-1a", "g5.xlarge", "A10G", 1, 1.0, 0.40),
    _o("aws", "us-east-1", "us-east-1b", "g5.xlarge", "A10G", 1, 1.0, 0.41),
    _o("aws", "us-west-2", "us-west-2a", "g5.xlarge", "A10G", 1, 1.1, 0.45),
    _o("gcp", "us-central1", "us-central1-a", "g2-standard-4", "L4", 1, 0.7, 0.30),
    _o("azure", "eastus", "", "Standard_NV36ads_A10_v5", "A10G", 1, 3.2, 0.90),
)
CONFIG = SchedulerConfig(retry_backoff_seconds=0.0, catalog=CATALOG, blocked_retry_seconds=600.0)
ALL = CloudsState(enabled=("aws", "gcp", "azure"))
A10G = {"A10G": 1}


def _failed(rid: int, kind: str, zone: str, region: str = "us-east-1", cloud: str = "aws",
            spot: bool = False, message: str = "") -> list[Event]:
    p = Placement(cloud=cloud, region=region, zone=zone, instance_type="g5.xlarge",
                  accelerators={"A10G": 1.0}, use_spot=spot, price_per_hour=1.0)  # fmt: skip
    return [
        ReplicaScheduled(service=NAME, replica_id=rid, placement=p),
        ReplicaProvisioningStarted(service=NAME, replica_id=rid),
        ReplicaLaunchFailed(service=NAME, replica_id=rid, kind=kind, message=message, placement=p),  # type: ignore[arg-type]
        ReplicaTerminationRequested(service=NAME, replica_id=rid, reason="clean up"),
        ReplicaTerminated(service=NAME, replica_id=rid),
    ]


def _scheduled(actions: list[Action]) -> list[tuple[str, str, str, float]]:
    return [
        (a.placement.cloud, a.placement.region, a.placement.zone, a.placement.price_per_hour)
        for a in actions
        if isinstance(a, ScheduleReplica)
    ]


def _svc(extra: list[Event], **kw: Any) -> ServiceState:
    return build(spec(1, cloud=kw.pop("cloud", "aws"), accelerators=kw.pop("acc", A10G), **kw), extra=extra)


def test_cheapest_zone_first() -> None:
    actions = plan(_svc([]), NOW, CONFIG, ALL)
    assert _scheduled(actions) == [("aws", "us-east-1", "us-east-1a", 1.0)]
    (action,) = actions
    assert isinstance(action, ScheduleReplica)
    assert action.reason == "aws/us-east-1/us-east-1a g5.xlarge on-demand at $1.00/h: best of 3 offers"
    start = FleetState(services={NAME: _svc([])})
    folded = fold_events([(to_event(NAME, action), NOW)], start).services[NAME]
    assert folded.replicas[action.replica_id].placement_reason == action.reason


def test_capacity_in_the_cheapest_zone_fails_over_to_the_next_cheapest() -> None:
    svc = _svc(_failed(1, "capacity", "us-east-1a", message="InsufficientInstanceCapacity"))
    actions = plan(svc, NOW, CONFIG, ALL)
    assert _scheduled(actions) == [("aws", "us-east-1", "us-east-1b", 1.0)]
    reason = next(a.reason for a in actions if isinstance(a, ScheduleReplica))
    blocked = "aws/us-east-1/us-east-1a g5.xlarge capacity (InsufficientInstanceCapacity)"
    assert f"(1 blocked until retried: {blocked})" in reason


def test_quota_in_a_region_fails_over_to_another_region() -> None:
    svc = _svc(_failed(1, "quota", "us-east-1a", message="VcpuLimitExceeded"))
    assert _scheduled(plan(svc, NOW, CONFIG, ALL)) == [("aws", "us-west-2", "us-west-2a", 1.1)]


def test_unpinned_fails_over_to_another_cloud() -> None:
    events = _failed(1, "quota", "us-east-1a") + _failed(2, "quota", "us-west-2a", region="us-west-2")
    svc = _svc(events, cloud=None)
    assert _scheduled(plan(svc, NOW, CONFIG, ALL)) == [("azure", "eastus", "", 3.2)]


def test_all_blocked_waits_with_a_reason_then_retries_after_the_block() -> None:
    events = (
        _failed(1, "capacity", "us-east-1a")
        + _failed(2, "capacity", "us-east-1b")
        + _failed(3, "quota", "us-west-2a", region="us-west-2")
    )
    svc = _svc(events)
    actions = plan(svc, NOW, CONFIG, ALL)
    assert [type(a) for a in actions] == [WaitForPlacement]
    wait = actions[0]
    assert isinstance(wait, WaitForPlacement) and wait.reason.startswith("every offer (3) failed recently")
    # Recorded, the reason shows in the service status, and is not recorded twice.
    folded = fold_events([(to_event(NAME, wait), NOW)], FleetState(services={NAME: svc})).services[NAME]
    status = service_status(folded)
    assert status.status == "FAILED" and "cannot place a replica: every offer (3) failed" in status.reason
    assert plan(folded, NOW + 1, CONFIG, ALL) == []
    # The first block (replica 1's failure, recorded at t=12 by the builder) ends at 612.
    assert wait.retry_at == 612.0
    later = plan(folded, 10_000.0, CONFIG, ALL)
    assert _scheduled(later) == [("aws", "us-east-1", "us-east-1a", 1.0)]
    events_later = [(to_event(NAME, a), 10_000.0) for a in later]
    scheduled = fold_events(events_later, FleetState(services={NAME: folded}))
    assert scheduled.services[NAME].placement_wait == ""


def test_spot_capacity_does_not_block_on_demand() -> None:
    svc = _svc(_failed(1, "capacity", "us-east-1a", spot=True))
    assert _scheduled(plan(svc, NOW, CONFIG, ALL)) == [("aws", "us-east-1", "us-east-1a", 1.0)]


def test_pinned_cloud_not_enabled_waits_with_the_reason() -> None:
    clouds = CloudsState(enabled=("gcp",), disabled={"aws": "no credentials found; run `aws configure`"})
    actions = plan(_svc([]), NOW, CONFIG, clouds)
    assert len(actions) == 1 and isinstance(actions[0], WaitForPlacement)
    assert "cloud aws is not enabled (no credentials found; run `aws configure`)" in actions[0].reason
    assert isinstance(to_event(NAME, actions[0]), PlacementUnavailable)


def test_pinned_cloud_before_any_cloud_check_waits_not_local() -> None:
    actions = plan(_svc([]), NOW, CONFIG, None)
    assert len(actions) == 1 and isinstance(actions[0], WaitForPlacement)
    assert "has not reported which clouds are enabled" in actions[0].reason


def test_allowed_clouds_limit_the_enabled_ones() -> None:
    clouds = CloudsState(enabled=("aws", "azure"), allowed=("azure",))
    assert _scheduled(plan(_svc([], cloud=None), NOW, CONFIG, clouds)) == [("azure", "eastus", "", 3.2)]


def test_no_cloud_runs_locally_without_enabled_clouds_and_on_clouds_with_them() -> None:
    svc = _svc([], cloud=None, acc={"L4": 1})
    assert _scheduled(plan(svc, NOW, CONFIG, CloudsState())) == [("local", "local", "", 0.0)]
    assert _scheduled(plan(svc, NOW, CONFIG, None)) == [("local", "local", "", 0.0)]
    assert _scheduled(plan(svc, NOW, CONFIG, ALL)) == [("gcp", "us-central1", "us-central1-a", 0.7)]


def test_clouds_checked_folds_into_the_fleet_state() -> None:
    ev = CloudsChecked(service="", enabled=["aws", "gcp"], disabled={"azure": "no login"}, allowed=["gcp"])
    state = fold_events([(ev, 5.0)])
    assert state.clouds == CloudsState(
        enabled=("aws", "gcp"), disabled={"azure": "no login"}, allowed=("gcp",), checked_at=5.0
    )
    assert state.clouds.usable == ("gcp",)
    assert fold_events([], state).clouds == state.clouds


def test_placement_spreads_and_avoids_preempted_zones() -> None:
    placer = spec(3, use_spot=True, placer="dynamic_fallback", cloud="aws", accelerators=A10G)
    actions = plan(build(placer), NOW, CONFIG, ALL)
    zones = [a.placement.zone for a in actions if isinstance(a, ScheduleReplica)]
    assert sorted(zones) == ["us-east-1a", "us-east-1b", "us-west-2a"]
    assert all(isinstance(a, ScheduleReplica) and a.placement.use_spot for a in actions)
