"""The scheduler's pure reconcile step: desired replicas vs observed replicas -> actions.

Level-triggered: ``plan`` reads one service's whole state and returns what should happen
now; running it again before the resulting events are folded back is the caller's concern.

Rules, in order:

1. A replica that FAILED* or was PREEMPTED gets one termination request (its instance is
   cleaned up; the record stays for display) and no longer counts.
2. ``down``: terminate everything (READY replicas with a drain); once every replica is
   terminated (or its cleanup failed), ``MarkServiceTerminated``.
3. The launch version is the latest, unless it gave up (``max_consecutive_failures``
   failures and never READY): then the newest older version that worked, so a broken
   update never takes the old version down. No launchable version: launch nothing
   (``service_status`` says FAILED and why).
4. Desired count: the last ScaleDecided target when autoscaling, else ``min_replicas``
   (overprovision included), split into spot / on-demand (fallback). Missing replicas are
   launched (bounded by ``max_concurrent_launches`` in PENDING/PROVISIONING, and delayed by
   an exponential backoff after failures); extra ones are terminated least useful first
   (PENDING, PROVISIONING, STARTING, NOT_READY, READY; older version first; newest first).
5. Updates. Launch version receiving traffic (rolling, or steady state): old-version
   replicas are kept only while needed, ``target - READY new``, most useful first.
   Launch version not yet receiving traffic (blue-green): the serving set is maintained as
   well, at its own version's size (never grown to the new target), and once
   ``min(target, max(1, min_replicas))`` new replicas are READY traffic is switched
   and the old ones are terminated (READY ones with a drain).
"""

from __future__ import annotations

import msgspec
from msgspec.structs import replace

from libs.catalog import CLOUDS, Offer, load_catalog
from libs.fleet.policy import instance_aware_scale_down, instance_aware_scale_down_key
from libs.fleet.state import CloudsState, ReplicaState, ServiceState
from libs.fleet.status import (
    ALIVE_STATUSES,
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    FAILED_CLEANUP,
    LAUNCHING_STATUSES,
    READY,
    REPLACED_STATUSES,
    USEFULNESS,
    desired_split,
    desired_target,
    is_blocked,
    launch_version,
    replica_status,
)
from libs.placement import DYNAMIC_FALLBACK, Chosen, ZoneKey, blocks_from, place
from libs.placement.spot_policy import (
    DEFAULT_SPOT_POLICY,
    StratusParams,
    policy_split,
    spot_zones,
    zone_view,
)

from .actions import (
    Action,
    MarkServiceTerminated,
    RequestTermination,
    ScheduleReplica,
    SetTrafficVersions,
    WaitForPlacement,
    to_event,
)

# The actions live in actions.py; importers of plan keep finding them here.
__all__ = [
    "Action",
    "MarkServiceTerminated",
    "RequestTermination",
    "ScheduleReplica",
    "SchedulerConfig",
    "SetTrafficVersions",
    "WaitForPlacement",
    "plan",
    "to_event",
]


def shipped_offers() -> tuple[Offer, ...]:
    """The shipped catalog (tests and tools; the service passes the one under STRATUS_HOME)."""
    return load_catalog().offers


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True):
    max_concurrent_launches: int = 4
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
    # Relaunch delay after k failures since the last READY: min(base * 2**(k-1), max).
    retry_backoff_seconds: float = 5.0
    max_retry_backoff_seconds: float = 300.0
    # Router drain for READY replicas that are scaled down or replaced.
    drain_seconds: float = 30.0
    # How long a preemption makes the dynamic_fallback spot placer avoid a zone.
    zone_memory_seconds: float = 1800.0
    # How long a capacity (zone, instance type) or quota (region) failure blocks its location.
    blocked_retry_seconds: float = 600.0
    # The dynamic_fallback spot placer's policy (libs.placement.spot_policy): stratus, skyserve, round_robin.
    spot_policy: str = DEFAULT_SPOT_POLICY
    spot_params: StratusParams = StratusParams()
    catalog: tuple[Offer, ...] = msgspec.field(default_factory=shipped_offers)


class _Planner:
    def __init__(
        self, service: ServiceState, now: float, config: SchedulerConfig, clouds: CloudsState | None
    ) -> None:
        self.service = service
        self.now = now
        self.config = config
        self.clouds = clouds
        self.waiting = False
        self.actions: list[Action] = []
        self.statuses = {rid: replica_status(r) for rid, r in service.replicas.items()}
        self.replicas = sorted(service.replicas.values(), key=lambda r: r.replica_id)
        self.alive = [r for r in self.replicas if self.statuses[r.replica_id] in ALIVE_STATUSES]
        in_flight = sum(1 for s in self.statuses.values() if s in LAUNCHING_STATUSES)
        self.budget = max(0, config.max_concurrent_launches - in_flight)
        self.next_id = service.next_replica_id
        self.terminating: set[int] = set()
        self.spot_placements = [r.placement for r in self.alive if r.is_spot]

    # ----------------------------------------------------------------- primitives

    def terminate(self, rep: ReplicaState, reason: str, drain: bool = True) -> None:
        if rep.replica_id in self.terminating:
            return
        self.terminating.add(rep.replica_id)
        ready = self.statuses[rep.replica_id] == READY
        self.actions.append(
            RequestTermination(
                replica_id=rep.replica_id,
                reason=reason,
                drain_seconds=self.config.drain_seconds if drain and ready else 0.0,
                purge=self.service.purge,
            )
        )

    def sort_least_useful(self, reps: list[ReplicaState]) -> list[ReplicaState]:
        st = self.statuses
        return sorted(reps, key=lambda r: (USEFULNESS.get(st[r.replica_id], 0), r.version, -r.replica_id))

    def sort_for_scale_down(self, reps: list[ReplicaState]) -> list[ReplicaState]:
        """The replicas a scale-down removes first; an instance-aware service's: the lowest target
        QPS first, as SkyServe's instance-aware autoscaler (libs.fleet.policy)."""
        scale = self.service.policy.autoscale
        if not instance_aware_scale_down(scale):
            return self.sort_least_useful(reps)
        key = instance_aware_scale_down_key
        return sorted(reps, key=lambda r: key(scale, r.placement.accelerators, r.version, r.replica_id))

    def can_launch(self, version: int) -> bool:
        info = self.service.versions.get(version)
        if info is None or is_blocked(info, self.config.max_consecutive_failures):
            return False
        k = info.retry_failures
        if k > 0 and info.last_failure_at is not None:
            cfg = self.config
            delay = min(cfg.retry_backoff_seconds * 2.0 ** min(k - 1, 30), cfg.max_retry_backoff_seconds)
            return self.now >= info.last_failure_at + delay
        return True

    def avoid(self, use_spot: bool, spot_placer: str | None) -> set[ZoneKey]:
        """Zones the dynamic_fallback spot placer avoids (soft) after a preemption there."""
        out: set[ZoneKey] = set()
        if not use_spot or spot_placer != DYNAMIC_FALLBACK:
            return out
        for ev in self.service.zone_events:
            if ev.kind == "preempted" and self.now - ev.at <= self.config.zone_memory_seconds:
                out.add((ev.cloud, ev.region, ev.zone))
        return out

    def spot_zones(self, version: int) -> list[ZoneKey]:
        info = self.service.versions.get(version)
        resources = (info.policy if info is not None else self.service.policy).resources
        usable = self.clouds.usable if self.clouds is not None else ()
        return spot_zones(resources, self.config.catalog, usable)

    def launch(self, version: int, use_spot: bool, count: int) -> None:
        if count <= 0 or self.budget <= 0 or not self.can_launch(version):
            return
        policy = self.service.versions[version].policy
        avoid = self.avoid(use_spot, policy.spot_placer)
        blocks = blocks_from(self.service.zone_events, self.now, self.config.blocked_retry_seconds)
        clouds = self.clouds
        usable = clouds.usable if clouds is not None else ()
        # dynamic_fallback spot: the spot policy ranks zones; capacity failures feed it, not blocks.
        placer = self.config.spot_policy if use_spot and policy.spot_placer == DYNAMIC_FALLBACK else None
        zones = spot_zones(policy.resources, self.config.catalog, usable) if placer else []
        if placer:
            blocks = [b for b in blocks if not (b.use_spot and b.kind == "capacity")]
        for _ in range(min(count, self.budget)):
            view = None
            if placer:
                view = zone_view(placer, self.service, zones, self.now, self.next_id,
                                 self.config.spot_params, self.spot_placements)  # fmt: skip
                avoid = set(view.avoid)
            found = place(
                policy.resources,
                self.config.catalog,
                use_spot=use_spot,
                clouds=clouds.usable if clouds is not None else (),
                disabled=_why_disabled(clouds),
                blocks=blocks,
                avoid=avoid,
                spot_placer=policy.spot_placer,
                existing=self.spot_placements if view is None or view.spread else (),
                ordered=policy.ordered,
                zone_score=view.score if view is not None else None,
                num_nodes=self.service.versions[version].typed.num_nodes,
            )
            if not isinstance(found, Chosen):
                if not self.waiting and found.reason != self.service.placement_wait:
                    self.actions.append(
                        WaitForPlacement(
                            version=version,
                            use_spot=use_spot,
                            reason=found.reason,
                            retry_at=found.retry_at or 0.0,
                        )
                    )
                self.waiting = True
                return
            placement = found.placement
            action = ScheduleReplica(
                replica_id=self.next_id, version=version, placement=placement, reason=found.reason
            )
            self.actions.append(action)
            self.next_id += 1
            self.budget -= 1
            if use_spot:
                self.spot_placements.append(placement)

    def reconcile_set(self, members: list[ReplicaState], version: int, target: int) -> None:
        """Bring ``members`` to ``target`` (per spot / on-demand class), launching ``version``."""
        st = self.statuses
        ready_spot = sum(1 for r in members if r.is_spot and st[r.replica_id] == READY)
        spot_want, od_want = desired_split(self.service, version, target, ready_spot)
        od_alive = sum(1 for r in members if not r.is_spot)
        counts = policy_split(self.config.spot_policy, self.service, version, target, ready_spot, od_alive,
                              self.now, lambda: self.spot_zones(version), self.config.spot_params)
        if counts is not None:
            spot_want, od_want = counts.spot, counts.on_demand
        for use_spot, want in ((True, spot_want), (False, od_want)):
            have = [r for r in members if r.is_spot == use_spot]
            if len(have) > want:
                kind = "spot" if use_spot else "on-demand"
                for rep in self.sort_for_scale_down(have)[: len(have) - want]:
                    self.terminate(rep, f"scale down: {len(have)} {kind} replicas, {want} wanted")
            else:
                self.launch(version, use_spot, want - len(have))

    def version_target(self, version: int) -> int:
        """``desired_target`` under ``version``'s own policy (its bounds, the same decision)."""
        info = self.service.versions.get(version)
        if info is None:
            return desired_target(self.service)
        return desired_target(replace(self.service, latest_version=version))

    # ----------------------------------------------------------------- the plan

    def run(self) -> list[Action]:
        svc = self.service
        for rep in self.replicas:
            status = self.statuses[rep.replica_id]
            if (
                status in REPLACED_STATUSES
                and status != FAILED_CLEANUP
                and rep.termination is None
                and rep.terminated_at is None
            ):
                self.terminate(rep, f"clean up {status} replica", drain=False)
        if svc.down_requested:
            self.down()
            return self.actions
        self.reconcile()
        return self.actions

    def down(self) -> None:
        left = [r for r in self.replicas if r.terminated_at is None]
        for rep in left:
            if rep.termination is None:
                # READY replicas are drained: in-flight requests (streams) finish first.
                self.terminate(rep, "service down")
        if not left:
            failed = sum(1 for s in self.statuses.values() if s == FAILED_CLEANUP)
            reason = "down requested: all replicas terminated"
            if failed:
                reason += f" ({failed} with failed cleanup)"
            self.actions.append(MarkServiceTerminated(reason=reason))

    def reconcile(self) -> None:
        svc = self.service
        target = desired_target(svc)
        version = launch_version(svc, self.config.max_consecutive_failures)
        current_version = version if version is not None else svc.latest_version
        traffic = set(svc.traffic_versions)
        current = [r for r in self.alive if r.version == current_version]
        stale = [r for r in self.alive if r.version != current_version]
        serving = [r for r in stale if r.version in traffic]
        unused = [r for r in stale if r.version not in traffic]
        st = self.statuses
        ready_new = sum(1 for r in current if st[r.replica_id] == READY)
        for rep in unused:
            self.terminate(rep, f"version {rep.version} is not receiving traffic")

        if current_version in traffic:
            # Rolling (or steady state): keep old replicas only while new ones are not READY.
            self.reconcile_set(current, current_version, target)
            keep = max(0, target - ready_new)
            drop = self.sort_least_useful(serving)[: max(0, len(serving) - keep)]
            for rep in drop:
                self.terminate(rep, f"rolling update to version {current_version}: {ready_new} READY")
            return

        # Blue-green: the new set warms up without traffic; switch once enough are READY.
        threshold = min(target, max(1, svc.policy.autoscale.min_replicas))
        self.reconcile_set(current, current_version, target)
        if ready_new >= threshold:
            self.actions.append(
                SetTrafficVersions(
                    versions=(current_version,),
                    reason=f"version {current_version} has {ready_new} READY replicas (>= {threshold})",
                )
            )
            for rep in serving:
                self.terminate(rep, f"blue-green switch to version {current_version}")
            return
        if traffic:
            # Replace lost serving replicas with the newest serving version that may launch
            # (not one that gave up, e.g. a broken rolling update before this blue-green one).
            usable = [
                v for v in sorted(traffic, reverse=True)
                if v in svc.versions and not is_blocked(svc.versions[v], self.config.max_consecutive_failures)
            ]  # fmt: skip
            old = usable[0] if usable else max(traffic)
            # The serving set keeps its own size (never grown to the new target: a replica of the
            # old version launched now would be terminated at the switch).
            self.reconcile_set(serving, old, self.version_target(old))


def _why_disabled(clouds: CloudsState | None) -> dict[str, str]:
    if clouds is None:
        return {c: "the provisioner has not reported which clouds are enabled yet" for c in CLOUDS}
    out = dict(clouds.disabled)
    allowed = {c.lower() for c in clouds.allowed}
    for cloud in clouds.enabled:
        if allowed and cloud.lower() not in allowed:
            out[cloud] = "not in allowed_clouds of config.yaml"
    return out


def plan(
    service: ServiceState,
    now: float,
    config: SchedulerConfig | None = None,
    clouds: CloudsState | None = None,
) -> list[Action]:
    """The actions that move ``service`` toward its desired state at time ``now``, placing
    replicas over ``clouds`` (the last CloudsChecked; None: none recorded, so only specs without
    ``cloud`` run, locally)."""
    if service.terminated:
        return []
    return _Planner(service, now, config if config is not None else SchedulerConfig(), clouds).run()
