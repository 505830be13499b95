"""The trace-driven simulation of one service over one window, driving Stratus's own code.

Each 30 s tick ``t`` (``now = EPOCH + 30 t``):

1. the simulated provider applies the zones' capacities: spot replicas above a zone's
   capacity are preempted, youngest first (``Preempted``);
2. a replica launched at ``t0`` that is still running at ``t0 + cold_start`` becomes
   ``ReplicaReady`` (the cold start; with youngest-first preemption this is PROTOCOL.md's
   "smallest count over t - 4 .. t" rule, replica by replica);
3. the controller: ``services.autoscaler.decide.decide`` (fixed-size services: no decision),
   then ``services.scheduler.plan.plan`` on the folded ``ServiceState``; its actions become
   the events the scheduler appends (``to_event``), and the provider acts on them at once: a
   ``ReplicaScheduled`` spot replica in a zone at capacity fails (``ReplicaLaunchFailed``,
   ``capacity``), else it is ``ReplicaLaunched``; on-demand always launches; a
   ``ReplicaTerminationRequested`` is ``ReplicaTerminated``;
4. accounting over ticks ``[cold_start, ticks)``: cost = running spot + 3 x running
   on-demand (cold-starting replicas included), available = at least ``target`` READY.

Every event goes through ``libs.fleet.fold`` (the projection the services read); the
simulator keeps only the provider's truth (which replica runs where since when).
"""

from __future__ import annotations

from typing import Any

import msgspec

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
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
    ServiceRequested,
)
from libs.fleet.fold import fold_events
from libs.fleet.state import FleetState, ServiceState
from libs.fleet.status import ready_spot
from libs.placement.spot_policy import StratusParams
from libs.spec import load_spec, spec_to_dict
from services.autoscaler.decide import AutoscalerState, decide
from services.scheduler.plan import SchedulerConfig, plan, to_event

from .traces import TICK_SECONDS, Trace

EPOCH = 1_700_000_000.0
SERVICE = "bench"
ON_DEMAND_PRICE = 3.0
SPOT_PRICE = 1.0


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """A policy under test: the service spec's knobs and the scheduler's spot policy."""

    name: str
    use_spot: bool = True
    num_overprovision: int = 0
    dynamic_ondemand_fallback: bool = False
    spot_policy: str = "stratus"
    params: StratusParams = StratusParams()

    def spec(self, target: int) -> dict[str, Any]:
        """The normalized spec (``libs.spec``, as ``stratus up`` records it) of the service."""
        policy = f"    min_replicas: {target}\n"
        if self.use_spot:
            policy += (
                f"    num_overprovision: {self.num_overprovision}\n"
                f"    dynamic_ondemand_fallback: {str(self.dynamic_ondemand_fallback).lower()}\n"
                "    spot_placer: dynamic_fallback\n"
            )
        text = (
            "service:\n  readiness_probe: /\n  replica_policy:\n" + policy
            + f"resources:\n  accelerators: V100:1\n  use_spot: {str(self.use_spot).lower()}\n  ports: 8080\n"
            + "run: serve\n"
        )  # fmt: skip
        return spec_to_dict(load_spec(text))


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(name="ondemand", use_spot=False),
        Policy(name="round_robin", spot_policy="round_robin"),
        Policy(name="skyserve", num_overprovision=1, dynamic_ondemand_fallback=True, spot_policy="skyserve"),
        Policy(name="stratus", num_overprovision=1, dynamic_ondemand_fallback=True, spot_policy="stratus"),
    )
}


class WindowResult(msgspec.Struct, frozen=True, kw_only=True):
    cost: float
    ticks: int
    available_ticks: int
    ready_sum: int
    spot_ticks: int  # replica-ticks
    on_demand_ticks: int
    launches: int
    launch_failures: int
    preemptions: int


class TickRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One tick of a recorded run: the events of the tick (provider and scheduler, in order)
    and the replicas READY at its end."""

    tick: int
    events: list[Event]
    ready: int


class _Running(msgspec.Struct, kw_only=True):
    zone: int  # -1: on-demand
    since: int
    ready: bool = False


def catalog_for(trace: Trace) -> tuple[Offer, ...]:
    return tuple(
        Offer(cloud=z.cloud, region=z.region, zone=z.name, instance_type="sim.v100", accelerator="V100",
              accelerator_count=1.0, price=ON_DEMAND_PRICE, spot_price=SPOT_PRICE)
        for z in trace.zones
    )  # fmt: skip


def simulate(
    trace: Trace,
    offset: int,
    policy: Policy,
    *,
    ticks: int,
    target: int = 3,
    cold_start: int = 4,
    config: SchedulerConfig | None = None,
    rounds: int = 1,
    record: list[TickRecord] | None = None,
) -> WindowResult:
    """One window: ``ticks`` ticks of ``trace`` from ``offset`` under ``policy``. The scheduler
    plans once a tick (the protocol retries a failed launch the next tick), or up to ``rounds``
    times (again after a failed launch, as the event-driven scheduler would within 30 s).
    ``record``: a list that gets every tick's events and READY count (``TickRecord``)."""
    catalog = catalog_for(trace)
    cfg = config if config is not None else bench_config(catalog, policy)
    zone_index = {z.name: i for i, z in enumerate(trace.zones)}
    caps = trace.capacities(offset, ticks)
    clouds = sorted({z.cloud for z in trace.zones})
    spec = policy.spec(target)
    fleet = fold_events(
        [
            (CloudsChecked(service="", enabled=clouds), EPOCH),
            (ServiceRequested(service=SERVICE, spec=spec), EPOCH),
        ]
    )
    svc = fleet.services[SERVICE]
    auto = svc.policy.autoscale
    auto_state = AutoscalerState(service=SERVICE)
    running: dict[int, _Running] = {}
    available = ready_sum = launches = failures = preemptions = spot_ticks = od_ticks = 0
    for t in range(ticks):
        now = EPOCH + t * TICK_SECONDS
        cap = caps[t]
        events: list[Event] = []
        tick_events: list[Event] = []
        # 1. capacity: preempt the youngest spot replicas above each zone's capacity.
        per_zone: dict[int, list[int]] = {}
        for rid, run in running.items():
            if run.zone >= 0:
                per_zone.setdefault(run.zone, []).append(rid)
        for zone, rids in per_zone.items():
            excess = len(rids) - cap[zone]
            if excess > 0:
                for rid in sorted(rids, key=lambda r: (running[r].since, r))[-excess:]:
                    events.append(
                        Preempted(service=SERVICE, replica_id=rid, placement=svc.replicas[rid].placement)
                    )
                    del running[rid]
                    preemptions += 1
        # 2. cold start.
        for rid, run in running.items():
            if not run.ready and t - run.since >= cold_start:
                run.ready = True
                events.append(ReplicaReady(service=SERVICE, replica_id=rid))
        tick_events += events
        if events:
            fleet = fold_events([(e, now) for e in events], fleet)
            svc = fleet.services[SERVICE]
        # 3. the controller.
        if auto.autoscales:
            auto_state, decision = decide(auto, auto_state, now, ready_spot=ready_spot(svc))
            if decision is not None:
                fleet = _fold(fleet, [decision], now)
                svc = fleet.services[SERVICE]
        # rounds > 1: a failed launch is a new fact and the scheduler reconciles again at once.
        for _ in range(rounds):
            actions = plan(svc, now, cfg, fleet.clouds)
            if not actions:
                break
            events = []
            failed = False
            for action in actions:
                event = to_event(SERVICE, action)
                events.append(event)
                if isinstance(event, ReplicaScheduled):
                    outcome = _launch(event, t, cap, zone_index, running)
                    launches += isinstance(outcome, ReplicaLaunched)
                    if isinstance(outcome, ReplicaLaunchFailed):
                        failures += 1
                        failed = True
                    events.append(outcome)
                elif isinstance(event, ReplicaTerminationRequested):
                    running.pop(event.replica_id, None)
                    events.append(ReplicaTerminated(service=SERVICE, replica_id=event.replica_id))
            fleet = _fold(fleet, events, now)
            svc = fleet.services[SERVICE]
            tick_events += events
            if not failed:
                break
        # 4. accounting.
        if t >= cold_start:
            ready = 0
            for run in running.values():
                if run.zone >= 0:
                    spot_ticks += 1
                else:
                    od_ticks += 1
                ready += t - run.since >= cold_start
            ready_sum += ready
            available += ready >= target
        if record is not None:
            ready_now = sum(1 for run in running.values() if t - run.since >= cold_start)
            record.append(TickRecord(tick=t, events=tick_events, ready=ready_now))
    if launches == 0 and target > 0:
        raise RuntimeError(
            f"no replica was launched in {ticks} ticks of {trace.name} under {policy.name}: "
            f"{svc.placement_wait or 'the scheduler planned nothing'}"
        )
    return WindowResult(
        cost=spot_ticks * SPOT_PRICE + od_ticks * ON_DEMAND_PRICE,
        spot_ticks=spot_ticks,
        on_demand_ticks=od_ticks,
        ticks=max(0, ticks - cold_start),
        available_ticks=available,
        ready_sum=ready_sum,
        launches=launches,
        launch_failures=failures,
        preemptions=preemptions,
    )


def _fold(fleet: FleetState, events: list[Event] | list[ScaleDecided], now: float) -> FleetState:
    return fold_events([(e, now) for e in events], fleet)


def _launch(
    event: ReplicaScheduled, t: int, cap: list[int], zone_index: dict[str, int], running: dict[int, _Running]
) -> ReplicaLaunched | ReplicaLaunchFailed:
    p: Placement = event.placement
    rid = event.replica_id
    if p.use_spot:
        zone = zone_index[p.zone]
        used = sum(1 for r in running.values() if r.zone == zone)
        if used >= cap[zone]:
            return ReplicaLaunchFailed(
                service=SERVICE, replica_id=rid, kind="capacity", placement=p,
                message=f"no spot capacity in {p.zone} ({used} of {cap[zone]} in use)",
            )  # fmt: skip
    else:
        zone = -1
    running[rid] = _Running(zone=zone, since=t)
    return ReplicaLaunched(service=SERVICE, replica_id=rid, instance_id=f"sim-{rid}", url=f"http://sim/{rid}")


def bench_config(catalog: tuple[Offer, ...], policy: Policy) -> SchedulerConfig:
    """The scheduler's config in the bench: the trace's catalog and the policy under test;
    no relaunch backoff (the protocol retries every tick)."""
    return SchedulerConfig(
        catalog=catalog,
        spot_policy=policy.spot_policy,
        spot_params=policy.params,
        retry_backoff_seconds=0.0,
        max_concurrent_launches=16,
    )


def service_state(fleet: FleetState) -> ServiceState:
    return fleet.services[SERVICE]
