"""Spot policies of the ``dynamic_fallback`` spot placer (pure): which zone gets the next spot
replica, and how many spot and on-demand replicas to run.

Everything here is computed from what the controller itself recorded: the service's spot
zone events (``Preempted``, capacity ``ReplicaLaunchFailed``; ``ServiceState.zone_events``)
and its replicas (where they run, when they became READY). No trace, no future.

Policies (``SchedulerConfig.spot_policy``):

``stratus`` (the default)
    Zones: spread first (fewest of our spot replicas), then the zone with the lowest
    *recent trouble* (preemptions and capacity failures, each weighing
    ``exp(-age / zone_memory)``), a zone that failed within ``cooldown`` seconds is avoided
    while some other zone has not. Counts: spot ``min_replicas + num_overprovision`` (the
    buffer absorbs one preemption without losing availability); on-demand covers only the
    READY deficit below ``min_replicas`` (not the missing buffer, as SkyServe does), is
    started one replica early while the zones are *troubled* (a failure within
    ``hedge_seconds``), and is kept until spot has been back to ``min_replicas`` READY for
    ``od_hold_seconds`` (dropped late, so a flapping zone does not relaunch it each time).

``skyserve``
    SkyServe's SpotHedge (SkyPilot's ``DynamicFallbackSpotPlacer``): zones that lost a
    replica (preempted or failed launch) are *preemptive* and skipped until fewer than two
    zones are left active, then all are active again; each replica goes to a (pseudo-)random
    active zone holding none of our replicas, else any active zone. Counts: SkyServe's own
    ``split_spot_on_demand`` (``num_overprovision`` spot buffer, on-demand for every wanted
    spot replica not READY).

``round_robin``
    A baseline: replica ``i`` goes to zone ``i mod n`` (zones in catalog order), with the
    spec's counts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

import msgspec

from libs.catalog import Offer
from libs.fleet.policy import ResourceRequest
from libs.fleet.state import ServiceState, ZoneEvent

from .match import matches

DYNAMIC_FALLBACK = "dynamic_fallback"  # the spec's spot_placer these policies implement
STRATUS = "stratus"
SKYSERVE = "skyserve"
ROUND_ROBIN = "round_robin"
SPOT_POLICIES = (STRATUS, SKYSERVE, ROUND_ROBIN)
DEFAULT_SPOT_POLICY = STRATUS
FAILURE_KINDS = ("preempted", "capacity")
# SkyServe resets every zone to active when fewer than this many are left.
SKYSERVE_MIN_ACTIVE_ZONES = 1

ZoneKey = tuple[str, str, str]  # (cloud, region, zone)


class StratusParams(msgspec.Struct, frozen=True, kw_only=True):
    """The ``stratus`` policy's knobs (seconds)."""

    zone_memory: float = 3600.0
    cooldown: float = 600.0
    hedge_seconds: float = 900.0
    od_hold_seconds: float = 600.0


class ZoneView(msgspec.Struct, frozen=True, kw_only=True):
    """How the placer ranks spot zones: ``avoid`` (soft, first), then the spread (fewest of
    our spot replicas, when ``spread``), then ``score`` (lower first)."""

    avoid: frozenset[ZoneKey] = frozenset()
    score: dict[ZoneKey, float] = {}
    spread: bool = True


class SpotCounts(msgspec.Struct, frozen=True, kw_only=True):
    spot: int
    on_demand: int
    reason: str = ""


def check_policy(name: str) -> str:
    """``name`` if it is a spot policy, else ValueError naming the choices."""
    if name not in SPOT_POLICIES:
        raise ValueError(f"unknown spot policy {name!r}: one of {', '.join(SPOT_POLICIES)}")
    return name


def _key(ev: ZoneEvent) -> ZoneKey:
    return (ev.cloud, ev.region, ev.zone)


def spot_failures(events: Iterable[ZoneEvent]) -> list[ZoneEvent]:
    """Spot preemptions and capacity failures, oldest first."""
    return sorted((e for e in events if e.use_spot and e.kind in FAILURE_KINDS), key=lambda e: e.at)


def skyserve_preemptive(zones: Sequence[ZoneKey], events: Iterable[ZoneEvent]) -> set[ZoneKey]:
    """SpotHedge's preemptive zones after replaying the failures (with its reset)."""
    known = set(zones)
    preemptive: set[ZoneKey] = set()
    for ev in spot_failures(events):
        key = _key(ev)
        if key not in known:
            continue
        preemptive.add(key)
        if len(known - preemptive) < SKYSERVE_MIN_ACTIVE_ZONES:
            preemptive.clear()
    return preemptive


def zone_view(
    policy: str,
    service: ServiceState,
    zones: Sequence[ZoneKey],
    now: float,
    replica_id: int,
    params: StratusParams | None = None,
) -> ZoneView:
    """The ranking of ``zones`` for spot replica ``replica_id`` at ``now``."""
    if not zones:
        return ZoneView()
    if policy == ROUND_ROBIN:
        pick = zones[replica_id % len(zones)]
        return ZoneView(score={z: 0.0 if z == pick else 1.0 for z in zones}, spread=False)
    if policy == SKYSERVE:
        preemptive = skyserve_preemptive(zones, service.zone_events)
        # Random among equals, reproducibly: seeded by the service and the replica.
        rng = random.Random(f"{service.name}:{replica_id}")
        return ZoneView(avoid=frozenset(preemptive), score={z: rng.random() for z in zones})
    p = params if params is not None else StratusParams()
    score = dict.fromkeys(zones, 0.0)
    last: dict[ZoneKey, float] = {}
    for ev in spot_failures(service.zone_events):
        key = _key(ev)
        if key in score:
            score[key] += math.exp(-max(0.0, now - ev.at) / p.zone_memory)
            last[key] = ev.at
    cooling = {z for z, at in last.items() if now - at < p.cooldown}
    avoid = frozenset(cooling) if len(cooling) < len(zones) else frozenset()
    return ZoneView(avoid=avoid, score=score)


def stratus_counts(
    service: ServiceState,
    serving: int,
    buffer: int,
    ready_spot: int,
    on_demand_alive: int,
    now: float,
    params: StratusParams | None = None,
) -> SpotCounts:
    """The ``stratus`` split: ``serving`` replicas needed (min_replicas), ``buffer`` spot extra."""
    p = params if params is not None else StratusParams()
    spot = serving + buffer
    deficit = max(0, serving - ready_spot)
    failures = spot_failures(service.zone_events)
    troubled = bool(failures) and now - failures[-1].at < p.hedge_seconds
    want = deficit
    why = f"{ready_spot} of {serving} spot READY"
    if troubled and deficit == 0 and ready_spot < spot:
        want = 1
        why += f", buffer not READY and a spot failure {now - failures[-1].at:.0f}s ago: 1 on-demand early"
    if want < on_demand_alive:
        # Drop late: keep what runs until spot has covered the need for od_hold_seconds.
        covered_since = _spot_covered_since(service, serving, now)
        if covered_since is None or now - covered_since < p.od_hold_seconds:
            want = on_demand_alive
            why += ", on-demand kept until spot has been READY long enough"
    return SpotCounts(spot=spot, on_demand=min(want, serving), reason=why)


def _spot_covered_since(service: ServiceState, serving: int, now: float) -> float | None:
    """Since when at least ``serving`` spot replicas have been READY (the ``serving``-th
    oldest ``ready_at`` among READY spot replicas), or None if fewer are READY."""
    times = sorted(
        (r.ready_at for r in service.replicas.values()
         if r.is_spot and r.ready_at is not None and r.not_ready_at is None
         and r.preempted_at is None and r.termination is None and r.launch_failed is None)
    )  # fmt: skip
    if serving <= 0:
        return now
    if len(times) < serving:
        return None
    return times[serving - 1]


def spot_zones(
    requests: Sequence[ResourceRequest], offers: Sequence[Offer], clouds: Iterable[str]
) -> list[ZoneKey]:
    """The zones (catalog order, each once) with a spot offer for one of ``requests``."""
    usable = {c.lower() for c in clouds}
    out: dict[ZoneKey, None] = {}
    for offer in offers:
        if offer.cloud in usable and offer.spot_price is not None and any(matches(r, offer) for r in requests):
            out.setdefault((offer.cloud, offer.region, offer.zone), None)
    return list(out)


def policy_split(
    policy: str,
    service: ServiceState,
    version: int,
    target: int,
    ready_spot: int,
    on_demand_alive: int,
    now: float,
    params: StratusParams | None = None,
) -> SpotCounts | None:
    """The spot policy's (spot, on-demand) for ``version`` at ``target`` (overprovision
    included), or None to keep SkyServe's split: only ``stratus`` has its own, and only for a
    ``dynamic_fallback`` spot service with dynamic on-demand fallback and no base on-demand."""
    info = service.versions.get(version)
    pol = info.policy if info is not None else service.policy
    auto = pol.autoscale
    if (
        policy != STRATUS
        or pol.spot_placer != DYNAMIC_FALLBACK
        or not auto.use_spot
        or not auto.dynamic_ondemand_fallback
        or auto.base_ondemand_fallback_replicas > 0
    ):
        return None
    serving = max(0, target - auto.num_overprovision)
    return stratus_counts(service, serving, target - serving, ready_spot, on_demand_alive, now, params)
