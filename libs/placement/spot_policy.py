"""Spot policies of the ``dynamic_fallback`` spot placer (pure): which zone gets the next spot
replica, and how many spot and on-demand replicas to run.

Everything here is computed from what the controller itself recorded: the service's spot
zone events (``Preempted``, capacity ``ReplicaLaunchFailed``; ``ServiceState.zone_events``)
and its replicas (where they run, when they became READY). No trace, no future.

Policies (``SchedulerConfig.spot_policy``):

``stratus`` (the default)
    Zones: the lowest score wins, a zone that failed within ``cooldown`` seconds being avoided
    while another has not; the score is the zone's recent trouble (each preemption or
    capacity failure weighs ``exp(-age / zone_memory)``) plus ``spread_weight`` per spot
    replica of ours already there (spread, against correlated preemptions, but a zone that
    keeps failing loses to a full one); with more spot zones than spot replicas
    (``spread_first``), a zone holding none of ours comes before the score, as SpotHedge
    ranks them, so no two replicas share a zone while a clean one is left. Counts: the
    ``num_overprovision`` spot buffer only while *troubled* (starting up, or a preemption
    within ``trouble_seconds``, 1 h), so a calm service runs just ``min_replicas`` spot. With
    more spot zones than spot replicas, the buffer can sit in a zone of its own and covers any
    one zone's loss: it is then worth more and kept longer, 9 h after a preemption
    (``spread_trouble_seconds``) and the first 15 min of the service
    (``spread_young_seconds``); with few zones, replicas share zones, one zone's loss often
    takes more than the buffer, and the buffer goes after 1 h. On-demand covers the READY
    deficit below ``min_replicas`` at once (spot already starting in a zone without a failure
    within ``clean_seconds`` counts as coming), and, while troubled, the buffer not READY too
    unless spot launches into quiet zones are about to cover it (``hedge_on_demand``);
    on-demand is dropped as soon as spot covers ``min_replicas`` again (after
    ``od_hold_seconds``). Measured with ``python -m bench.spot`` (bench/spot/README.md).

``skyserve``
    SkyServe's SpotHedge as PROTOCOL.md describes it: zones that lost a replica (preempted
    or failed launch) are *preemptive* and skipped until no zone is left active, then all are
    active again (resetting already below two active zones, as SkyPilot's placer reads, puts
    the AWS1 cost at 0.68 instead of the paper's 0.514); each replica goes to a (pseudo-)random
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
from collections.abc import Callable, Iterable, Sequence

import msgspec

from libs.catalog import Offer
from libs.events.types import Placement
from libs.fleet.policy import ResourceRequest
from libs.fleet.state import ServiceState, ZoneEvent

from .choose import DYNAMIC_FALLBACK
from .match import matches

STRATUS = "stratus"
SKYSERVE = "skyserve"
ROUND_ROBIN = "round_robin"
SPOT_POLICIES = (STRATUS, SKYSERVE, ROUND_ROBIN)
DEFAULT_SPOT_POLICY = STRATUS
FAILURE_KINDS = ("preempted", "capacity")
# SpotHedge resets every zone to active when fewer than this many are left (see above).
SKYSERVE_MIN_ACTIVE_ZONES = 1

ZoneKey = tuple[str, str, str]  # (cloud, region, zone)


class StratusParams(msgspec.Struct, frozen=True, kw_only=True):
    """The ``stratus`` policy's knobs (seconds); the defaults are the ones bench/spot measured."""

    zone_memory: float = 3600.0  # a zone failure's weight decays as exp(-age / zone_memory)
    cooldown: float = 600.0  # a zone that failed this recently is avoided (while another has not)
    trouble_seconds: float = 3600.0  # keep the spot buffer this long after a preemption
    od_hold_seconds: float = 0.0  # keep on-demand this long after spot covers the need again
    clean_seconds: float = 3600.0  # a zone without a failure this long is "quiet"
    spread_weight: float = 0.3  # score per spot replica of ours already in the zone
    preempted_weight: float = 1.0  # a preemption's weight (a capacity failure weighs 1)
    hedge_on_demand: bool = True  # while troubled, on-demand also covers the buffer not READY
    hedge_seconds: float = 10800.0  # ... for at most this long after a preemption
    count_coming: bool = False  # count spot about to launch in quiet zones against the deficit too
    # With a zone for every spot replica and more (``spread_zones_extra``), a buffer replica
    # covers a whole zone's loss: it is kept longer after a preemption, and at start-up.
    spread_trouble_seconds: float = 32400.0  # instead of trouble_seconds
    spread_zones_extra: int = 1
    spread_young_seconds: float = 900.0  # the buffer while the service is younger than this
    # ... and the spot zones are ranked SpotHedge's way first: a zone holding none of ours wins
    # (then the score), so the buffer never shares a zone while a clean one is left.
    spread_first: bool = True
    # With spread zones, a capacity failure (scarcity) also keeps the buffer this long (0: off;
    # measured, not adopted: bench/spot/README.md).
    fail_trouble_seconds: float = 0.0


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
    existing: Sequence[Placement] = (),
) -> ZoneView:
    """The ranking of ``zones`` for spot replica ``replica_id`` at ``now``; ``existing``: the
    service's spot replicas (placements) so far."""
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
            weight = p.preempted_weight if ev.kind == "preempted" else 1.0
            score[key] += weight * math.exp(-max(0.0, now - ev.at) / p.zone_memory)
            last[key] = ev.at
    # Spread (correlated preemptions) weighs against trouble: a zone full of our replicas is
    # still better than one that keeps failing.
    for pl in existing:
        key = (pl.cloud, pl.region, pl.zone)
        if pl.use_spot and key in score:
            score[key] += p.spread_weight
    cooling = {z for z, at in last.items() if now - at < p.cooldown}
    avoid = frozenset(cooling) if len(cooling) < len(zones) else frozenset()
    auto = service.policy.autoscale
    wanted = auto.min_replicas + auto.num_overprovision
    spread = p.spread_first and len(zones) >= wanted + p.spread_zones_extra
    return ZoneView(avoid=avoid, score=score, spread=spread)


def stratus_counts(
    service: ServiceState,
    zones: Sequence[ZoneKey],
    serving: int,
    buffer: int,
    ready_spot: int,
    on_demand_alive: int,
    now: float,
    params: StratusParams | None = None,
) -> SpotCounts:
    """The ``stratus`` split: ``serving`` replicas needed (min_replicas), up to ``buffer`` spot extra."""
    p = params if params is not None else StratusParams()
    preempted = [e.at for e in service.zone_events if e.use_spot and e.kind == "preempted"]
    last = max(preempted) if preempted else None
    # Starting up (never had ``serving`` spot READY yet) counts as trouble: nothing is known.
    fresh = not any(r.is_spot and r.ready_at is not None for r in service.replicas.values()) and last is None
    trouble = p.trouble_seconds
    young = 0.0
    spread = len(zones) >= serving + buffer + p.spread_zones_extra
    if spread:
        trouble, young = max(trouble, p.spread_trouble_seconds), p.spread_young_seconds
    troubled = fresh or (last is not None and now - last < trouble) or now - service.created_at < young
    if spread and not troubled and p.fail_trouble_seconds > 0:
        failed = [e.at for e in service.zone_events if e.use_spot and e.kind == "capacity"]
        troubled = bool(failed) and now - max(failed) < p.fail_trouble_seconds
    spot = serving + (buffer if troubled else 0)
    # Spot replicas starting in zones without a recent failure will most likely be READY as
    # soon as an on-demand one would: no on-demand for those.
    failed_at: dict[ZoneKey, float] = {}
    for ev in spot_failures(service.zone_events):
        failed_at[_key(ev)] = ev.at
    quiet = [z for z in zones if now - failed_at.get(z, -math.inf) > p.clean_seconds]
    alive = starting = 0
    for r in service.replicas.values():
        if not r.is_spot or r.preempted_at is not None or r.termination is not None or r.failed is not None:
            continue
        if r.launch_failed is not None or r.ready_at is not None:
            alive += r.launch_failed is None
            continue
        alive += 1
        where = (r.placement.cloud, r.placement.region, r.placement.zone)
        starting += r.launched_at is not None and now - failed_at.get(where, -math.inf) > p.clean_seconds
    # The spot replicas about to be launched go to quiet zones first: count on them too (not at
    # start-up: no zone has been tried yet, and being late there costs availability at once).
    coming = 0 if fresh else min(max(0, spot - alive), len(quiet))
    # Below the need, on-demand starts at once unless spot is already starting; the buffer
    # counts on the spot launches about to happen too.
    want = max(0, serving - ready_spot - starting - (coming if p.count_coming else 0))
    hedging = last is not None and now - last < min(trouble, p.hedge_seconds)
    if hedging and p.hedge_on_demand:
        # Trouble: the buffer not READY is covered by on-demand (SpotHedge's rule) meanwhile.
        want = max(want, min(serving, spot - ready_spot - starting - coming))
    why = f"{ready_spot} of {serving} spot READY, {starting + coming} starting or launched in quiet zones"
    if troubled:
        why += (
            ", starting up"
            if last is None
            else f", spot buffer {buffer}: last preemption {now - last:.0f}s ago"
        )
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
        r.ready_at for r in service.replicas.values()
         if r.is_spot and r.ready_at is not None and r.not_ready_at is None
         and r.preempted_at is None and r.termination is None and r.launch_failed is None
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
        # The local provider's simulated zones place a request without a cloud when none is enabled.
        local = offer.cloud == "local" and (not usable or any(r.cloud == "local" for r in requests))
        if (
            (offer.cloud in usable or local)
            and offer.spot_price is not None
            and any(matches(r, offer) for r in requests)
        ):
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
    zones: Callable[[], Sequence[ZoneKey]],
    params: StratusParams | None = None,
) -> SpotCounts | None:
    """The spot policy's (spot, on-demand) for ``version`` at ``target`` (overprovision
    included), or None to keep SkyServe's split: only ``stratus`` has its own, and only for a
    ``dynamic_fallback`` spot service with dynamic on-demand fallback and no base on-demand.
    ``zones`` gives the spot zones; it is called only when the split is the policy's."""
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
    return stratus_counts(
        service, zones(), serving, target - serving, ready_spot, on_demand_alive, now, params
    )
