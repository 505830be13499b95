"""libs.placement.spot_policy: pure tables, and the scheduler's plan wired to it."""

from __future__ import annotations

import msgspec
import pytest

from libs.catalog import Offer
from libs.events.types import (
    CloudsChecked,
    Event,
    Placement,
    Preempted,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    ReplicaReady,
    ReplicaScheduled,
    ServiceRequested,
)
from libs.fleet.fold import fold_events
from libs.fleet.state import ServiceState, ZoneEvent
from libs.placement.spot_policy import (
    SKYSERVE,
    STRATUS,
    StratusParams,
    check_policy,
    policy_split,
    skyserve_preemptive,
    spot_zones,
    stratus_counts,
    zone_view,
)
from libs.spec import load_spec, spec_to_dict
from services.scheduler.plan import SchedulerConfig, ScheduleReplica, plan

T0 = 1_700_000_000.0
ZONES = [
    ("aws", "us-east-1", "us-east-1a"),
    ("aws", "us-east-1", "us-east-1b"),
    ("aws", "us-east-1", "us-east-1c"),
]
CATALOG = tuple(
    Offer(cloud=c, region=r, zone=z, instance_type="p3.2xlarge", accelerator="V100", accelerator_count=1.0,
          price=3.0, spot_price=1.0)
    for c, r, z in ZONES
)  # fmt: skip


def spec(overprovision: int = 1) -> dict[str, object]:
    text = (
        "service:\n  readiness_probe: /\n  replica_policy:\n    min_replicas: 3\n"
        f"    num_overprovision: {overprovision}\n    dynamic_ondemand_fallback: true\n"
        "    spot_placer: dynamic_fallback\n"
        "resources:\n  accelerators: V100:1\n  use_spot: true\n  ports: 8080\nrun: serve\n"
    )
    return spec_to_dict(load_spec(text))


def placement(zone: int) -> Placement:
    c, r, z = ZONES[zone]
    return Placement(cloud=c, region=r, zone=z, instance_type="p3.2xlarge", use_spot=True, price_per_hour=1.0)


def service(events: list[tuple[Event, float]], overprovision: int = 1) -> ServiceState:
    start: list[tuple[Event, float]] = [
        (CloudsChecked(service="", enabled=["aws"]), T0),
        (ServiceRequested(service="s", spec=spec(overprovision)), T0),
    ]
    return fold_events(start + events).services["s"]


def running(rid: int, zone: int, at: float, ready: bool = True) -> list[tuple[Event, float]]:
    out: list[tuple[Event, float]] = [
        (ReplicaScheduled(service="s", replica_id=rid, placement=placement(zone)), at),
        (ReplicaLaunched(service="s", replica_id=rid, instance_id=f"i-{rid}", url="http://x"), at),
    ]
    if ready:
        out.append((ReplicaReady(service="s", replica_id=rid), at + 120))
    return out


def failure(zone: int, at: float, kind: str = "preempted") -> ZoneEvent:
    c, r, z = ZONES[zone]
    return ZoneEvent(cloud=c, region=r, zone=z, kind=kind, use_spot=True, at=at)


@pytest.mark.parametrize(
    ("failed", "preemptive"),
    [
        ([], set()),
        ([0], {0}),
        ([0, 1], {0, 1}),
        ([0, 1, 2], set()),  # every zone failed: all active again
        ([0, 1, 2, 2], {2}),  # ... and the replay continues from there
        ([0, 0, 1], {0, 1}),
    ],
)
def test_skyserve_preemptive_zones_reset_when_none_is_left(failed: list[int], preemptive: set[int]) -> None:
    events = [failure(z, T0 + i) for i, z in enumerate(failed)]
    assert skyserve_preemptive(ZONES, events) == {ZONES[z] for z in preemptive}


def test_capacity_failures_count_on_demand_ones_do_not() -> None:
    c, r, z = ZONES[1]
    events = [
        failure(0, T0, "capacity"),
        ZoneEvent(cloud=c, region=r, zone=z, kind="preempted", use_spot=False, at=T0),
    ]
    assert skyserve_preemptive(ZONES, events) == {ZONES[0]}


def test_round_robin_cycles_by_replica_id_without_spread() -> None:
    svc = service([])
    picks = []
    for rid in range(1, 7):
        view = zone_view("round_robin", svc, ZONES, T0, rid)
        assert view.spread is False
        picks.append(min(ZONES, key=lambda z: view.score[z]))
    assert picks == [ZONES[1], ZONES[2], ZONES[0], ZONES[1], ZONES[2], ZONES[0]]


def test_stratus_zone_view_avoids_a_recent_failure_and_weighs_old_ones_less() -> None:
    svc = service([*running(1, 0, T0), (Preempted(service="s", replica_id=1), T0 + 1000)])
    view = zone_view(STRATUS, svc, ZONES, T0 + 1100, 2, StratusParams(cooldown=600.0))
    assert view.avoid == frozenset({ZONES[0]})
    assert view.score[ZONES[0]] > view.score[ZONES[1]] == view.score[ZONES[2]] == 0.0
    later = zone_view(STRATUS, svc, ZONES, T0 + 1000 + 700, 2, StratusParams(cooldown=600.0))
    assert later.avoid == frozenset()
    assert 0.0 < later.score[ZONES[0]] < view.score[ZONES[0]]


def test_stratus_spread_weighs_against_trouble() -> None:
    svc = service([])
    view = zone_view(STRATUS, svc, ZONES, T0, 1, StratusParams(spread_weight=0.3), existing=[placement(0)])
    assert view.score[ZONES[0]] == pytest.approx(0.3)
    assert min(ZONES, key=lambda z: view.score[z]) == ZONES[1]


def test_stratus_starts_with_the_buffer_then_drops_it_when_calm() -> None:
    fresh = stratus_counts(service([]), ZONES, 3, 1, 0, 0, T0)
    # Nothing known: the buffer, and on-demand for the need until spot is READY (as SkyServe).
    assert (fresh.spot, fresh.on_demand) == (4, 3)
    events = running(1, 0, T0) + running(2, 1, T0) + running(3, 2, T0)
    calm = stratus_counts(service(events), ZONES, 3, 1, 3, 0, T0 + 7200)
    assert (calm.spot, calm.on_demand) == (3, 0)


def test_stratus_keeps_the_buffer_longer_when_every_replica_can_have_a_zone_of_its_own() -> None:
    many = [("aws", "us-east-1", f"us-east-1{c}") for c in "abcdef"]
    events = running(1, 0, T0) + running(2, 1, T0) + running(3, 2, T0)
    # Young (the first 15 min): the buffer with many zones, none with three.
    assert stratus_counts(service(events), many, 3, 1, 3, 0, T0 + 600).spot == 4
    assert stratus_counts(service(events), ZONES, 3, 1, 3, 0, T0 + 600).spot == 3
    assert stratus_counts(service(events), many, 3, 1, 3, 0, T0 + 1000).spot == 3
    events.append((Preempted(service="s", replica_id=3), T0 + 3000))
    healed = service(events + running(5, 0, T0 + 3001))
    # 2 h after the preemption: with 3 zones (replicas share them) the buffer is gone after 1 h;
    # with 6 it stays 9 h.
    assert stratus_counts(healed, ZONES, 3, 1, 3, 0, T0 + 3000 + 7200).spot == 3
    assert stratus_counts(healed, many, 3, 1, 3, 0, T0 + 3000 + 7200).spot == 4
    assert stratus_counts(healed, many, 3, 1, 3, 0, T0 + 3000 + 9 * 3600 + 60).spot == 3


def test_stratus_after_a_preemption_buffers_and_hedges_with_on_demand() -> None:
    events = running(1, 0, T0) + running(2, 1, T0) + running(3, 2, T0)
    events.append((Preempted(service="s", replica_id=3), T0 + 3000))
    svc = service(events)
    p = StratusParams(trouble_seconds=3600.0, clean_seconds=3600.0)
    # 2 READY of 3 needed: on-demand for the deficit at once; the buffer's hedge counts on the
    # spot launches about to go to quiet zones (0 and 1 never failed).
    counts = stratus_counts(svc, ZONES, 3, 1, 2, 0, T0 + 3010, p)
    assert (counts.spot, counts.on_demand) == (4, 1)
    assert "2 starting or launched in quiet zones" in counts.reason
    # Counting on them for the deficit too (count_coming): no on-demand.
    eager = StratusParams(trouble_seconds=3600.0, clean_seconds=3600.0, count_coming=True)
    assert stratus_counts(svc, ZONES, 3, 1, 2, 0, T0 + 3010, eager).on_demand == 0
    # Every zone failed recently: nothing to count on; on-demand covers the deficit and, in
    # trouble, the buffer too.
    failing = events + [(ReplicaScheduled(service="s", replica_id=9, placement=placement(z)), T0 + 3001 + z)
                        for z in (0, 1)]  # fmt: skip
    failing += [(ReplicaLaunchFailed(service="s", replica_id=9, kind="capacity", placement=placement(z)),
                 T0 + 3001 + z) for z in (0, 1)]  # fmt: skip
    counts = stratus_counts(service(failing), ZONES, 3, 1, 2, 0, T0 + 3010, p)
    assert counts.on_demand == 2
    # Long after, with the replacement READY: calm, the buffer and the on-demand go.
    healed = service(events + running(5, 0, T0 + 3001))
    assert stratus_counts(healed, ZONES, 3, 1, 3, 1, T0 + 3000 + 3700, p).on_demand == 0
    assert stratus_counts(healed, ZONES, 3, 1, 3, 1, T0 + 3000 + 3700, p).spot == 3
    # While spot has not covered the need yet, the running on-demand replica stays.
    assert stratus_counts(svc, ZONES, 3, 1, 2, 1, T0 + 3000 + 3700, p).on_demand == 1


def test_policy_split_only_for_stratus_with_dynamic_fallback() -> None:
    svc = service([])
    asked: list[bool] = []

    def zones() -> list[tuple[str, str, str]]:
        asked.append(True)
        return ZONES

    assert policy_split(SKYSERVE, svc, 1, 4, 0, 0, T0, zones) is None
    assert asked == []  # the catalog is not scanned for policies without their own split
    assert policy_split(STRATUS, svc, 1, 4, 0, 0, T0, zones) is not None
    assert asked == [True]
    with pytest.raises(ValueError, match="unknown spot policy 'nope': one of stratus, skyserve, round_robin"):
        check_policy("nope")


def test_spot_zones_lists_matching_zones_once() -> None:
    svc = service([])
    assert spot_zones(svc.policy.resources, CATALOG + CATALOG, ["aws"]) == ZONES
    assert spot_zones(svc.policy.resources, CATALOG, ["gcp"]) == []


def test_plan_uses_the_configured_spot_policy() -> None:
    # Zone a preempted us: skyserve marks it preemptive and places the replacement elsewhere.
    events = running(1, 0, T0) + running(2, 1, T0) + running(3, 2, T0) + running(4, 0, T0)
    events.append((Preempted(service="s", replica_id=4), T0 + 500))
    svc = service(events)
    fleet_clouds = fold_events([(CloudsChecked(service="", enabled=["aws"]), T0)]).clouds
    sky = plan(svc, T0 + 510, SchedulerConfig(catalog=CATALOG, spot_policy=SKYSERVE), fleet_clouds)
    scheduled = [a for a in sky if isinstance(a, ScheduleReplica) and a.placement.use_spot]
    assert len(scheduled) == 1 and scheduled[0].placement.zone != ZONES[0][2]
    # ... and SkyServe's fallback: one on-demand for the spot replica not READY.
    assert sum(1 for a in sky if isinstance(a, ScheduleReplica) and not a.placement.use_spot) == 1
    # stratus: 3 READY, troubled: the buffer comes back, in a quiet zone, without on-demand.
    strat = plan(svc, T0 + 510, SchedulerConfig(catalog=CATALOG, spot_policy=STRATUS), fleet_clouds)
    kinds = sorted(a.placement.use_spot for a in strat if isinstance(a, ScheduleReplica))
    assert kinds == [True]  # spot replacement expected in a quiet zone: no on-demand yet


def test_settings_know_the_same_spot_policies() -> None:
    from libs.placement.spot_policy import SPOT_POLICIES
    from libs.runtime.settings import SPOT_POLICIES as SETTINGS_CHOICES
    from libs.runtime.settings import Settings, SettingsError

    assert SETTINGS_CHOICES == SPOT_POLICIES
    assert Settings.from_env({"STRATUS_SPOT_POLICY": "skyserve"}).spot_policy == "skyserve"
    assert Settings.from_env({}).spot_policy == "stratus"
    with pytest.raises(SettingsError, match="STRATUS_SPOT_POLICY='x': not one of stratus, skyserve"):
        Settings.from_env({"STRATUS_SPOT_POLICY": "x"})


def test_stratus_with_many_zones_puts_the_buffer_in_a_zone_of_its_own_before_the_score() -> None:
    # 6 zones, ours in a, b, c; d, e, f failed a launch 11 min ago (out of the cooldown, but
    # their trouble still outweighs one replica's spread weight).
    many = [("aws", "us-east-1", f"us-east-1{c}") for c in "abcdef"]
    catalog = tuple(
        Offer(cloud=c, region=r, zone=z, instance_type="p3.2xlarge", accelerator="V100",
              accelerator_count=1.0, price=3.0, spot_price=1.0)
        for c, r, z in many
    )  # fmt: skip
    events = running(1, 0, T0) + running(2, 1, T0) + running(3, 2, T0)
    failed = tuple(
        ZoneEvent(cloud=c, region=r, zone=z, kind="capacity", use_spot=True, at=T0 + 60)
        for c, r, z in many[3:]
    )
    svc = msgspec.structs.replace(service(events), zone_events=failed)
    now = T0 + 720  # young: the buffer is wanted
    clouds = fold_events([(CloudsChecked(service="", enabled=["aws"]), T0)]).clouds

    def buffer_zone(params: StratusParams) -> str:
        cfg = SchedulerConfig(catalog=catalog, spot_policy=STRATUS, spot_params=params)
        spot = [
            a for a in plan(svc, now, cfg, clouds) if isinstance(a, ScheduleReplica) and a.placement.use_spot
        ]
        assert len(spot) == 1
        return spot[0].placement.zone

    assert zone_view(STRATUS, svc, many, now, 4).spread
    assert buffer_zone(StratusParams()) in {"us-east-1d", "us-east-1e", "us-east-1f"}
    # By the score alone the buffer would share a zone with one of ours.
    assert buffer_zone(StratusParams(spread_first=False)) in {"us-east-1a", "us-east-1b", "us-east-1c"}
    # Three zones for four replicas: no zone of its own for each, the score decides.
    assert not zone_view(STRATUS, svc, ZONES, now, 4).spread
