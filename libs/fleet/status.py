"""Statuses derived from recorded facts (SkyServe's names), and shared derivations."""

from __future__ import annotations

from typing import NamedTuple

from .policy import split_spot_on_demand
from .state import ReplicaState, ServiceState, VersionInfo

PENDING = "PENDING"
PROVISIONING = "PROVISIONING"
STARTING = "STARTING"
READY = "READY"
NOT_READY = "NOT_READY"
SHUTTING_DOWN = "SHUTTING_DOWN"
TERMINATED = "TERMINATED"
FAILED = "FAILED"
FAILED_INITIAL_DELAY = "FAILED_INITIAL_DELAY"
FAILED_PROBING = "FAILED_PROBING"
FAILED_PROVISION = "FAILED_PROVISION"
FAILED_CLEANUP = "FAILED_CLEANUP"
PREEMPTED = "PREEMPTED"

# Counted as replicas of the service (they are, or will be, able to serve).
ALIVE_STATUSES = frozenset({PENDING, PROVISIONING, STARTING, READY, NOT_READY})
LAUNCHING_STATUSES = frozenset({PENDING, PROVISIONING})
FAILED_STATUSES = frozenset({FAILED, FAILED_INITIAL_DELAY, FAILED_PROBING, FAILED_PROVISION, FAILED_CLEANUP})
# Replaced by a new replica; their instance is cleaned up once.
REPLACED_STATUSES = FAILED_STATUSES | {PREEMPTED}

# Scale-down order: the earlier a replica is in its life, the less it is worth keeping.
USEFULNESS = {PENDING: 0, PROVISIONING: 1, STARTING: 2, NOT_READY: 3, READY: 4}

DEFAULT_MAX_CONSECUTIVE_FAILURES = 3
# Lines a provider writes into a replica's log (start, exit) to tell them from the workload's.
PROVIDER_MARK = "[stratus] "


def replica_status(replica: ReplicaState) -> str:
    """A replica's SkyServe status, from the facts recorded about it.

    The first matching row wins:

    ==  ===========================================================  ====================
    #   recorded fact                                                status
    ==  ===========================================================  ====================
    1   ``ReplicaTerminated`` with a ``cleanup_error``               FAILED_CLEANUP
    2   ``Preempted``                                                PREEMPTED
    3   ``ReplicaLaunchFailed``                                      FAILED_PROVISION
    4   ``ReplicaFailed(status)``                                    that status
    5   ``ReplicaProcessExited`` before termination was requested    FAILED
    6   ``ReplicaTerminated`` (clean)                                TERMINATED
    7   ``ReplicaTerminationRequested``                              SHUTTING_DOWN
    8   ``ReplicaReady``, not followed by ``ReplicaNotReady``        READY
    9   ``ReplicaReady`` then ``ReplicaNotReady``                    NOT_READY
    10  ``ReplicaLaunched``                                          STARTING
    11  ``ReplicaProvisioningStarted``                               PROVISIONING
    12  ``ReplicaScheduled`` only                                    PENDING
    ==  ===========================================================  ====================

    Failure facts that arrive after termination was requested are not recorded as failures
    by the fold (a replica being drained is expected to stop answering), so a scaled-down
    replica ends SHUTTING_DOWN -> TERMINATED. ``TERMINATED`` is Stratus's own: cleanly
    terminated replicas are dropped from the projection, as SkyServe drops them from its table.
    """
    if replica.cleanup_error:
        return FAILED_CLEANUP
    if replica.preempted_at is not None:
        return PREEMPTED
    if replica.launch_failed is not None:
        return FAILED_PROVISION
    if replica.failed is not None:
        return replica.failed.status
    if replica.exited is not None and not replica.exited.expected:
        return FAILED
    if replica.terminated_at is not None:
        return TERMINATED
    if replica.termination is not None:
        return SHUTTING_DOWN
    if replica.ready_at is not None:
        return READY if replica.not_ready_at is None else NOT_READY
    if replica.launched_at is not None:
        return STARTING
    if replica.provisioning_at is not None:
        return PROVISIONING
    return PENDING


def describe_failure(replica: ReplicaState) -> str:
    """``"replica 1 FAILED: run exited with code 1"``; empty when the replica has not failed."""
    status = replica_status(replica)
    detail = ""
    if status == FAILED_CLEANUP:
        detail = f"cleanup failed: {replica.cleanup_error}"
    elif status == PREEMPTED:
        p = replica.placement
        where = "/".join(x for x in (p.cloud, p.region, p.zone) if x)
        detail = f"spot instance preempted in {where}" if where else "spot instance preempted"
    elif status == FAILED_PROVISION and replica.launch_failed is not None:
        lf = replica.launch_failed
        detail = f"{lf.kind}: {lf.message}" if lf.message else lf.kind
    elif replica.failed is not None and status == replica.failed.status:
        detail = replica.failed.reason
    elif status == FAILED and replica.exited is not None:
        code = replica.exited.exit_code
        detail = replica.exited.reason or ("run exited" if code is None else f"run exited with code {code}")
        # Events recorded before ``reason`` carried a log tail: its last workload line.
        tail = [ln for ln in replica.exited.log_tail.strip().splitlines() if not ln.startswith(PROVIDER_MARK)]
        if tail and tail[-1].strip():
            detail += f" ({tail[-1].strip()[:200]})"
    else:
        return ""
    head = f"replica {replica.replica_id} {status}"
    return f"{head}: {detail}" if detail else head


# --------------------------------------------------------------------------- versions and targets


def is_blocked(info: VersionInfo, max_consecutive_failures: int) -> bool:
    """A version gave up: too many failures and never a READY replica."""
    return info.first_ready_at is None and info.consecutive_failures >= max_consecutive_failures


def launch_version(
    service: ServiceState, max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
) -> int | None:
    """The version new replicas get: the latest, unless it gave up; then the newest older
    version that was ever READY (else any older one that did not give up); None if none."""
    latest = service.latest_version
    info = service.versions.get(latest)
    if info is None or not is_blocked(info, max_consecutive_failures):
        return latest
    older = sorted((v for v in service.versions if v < latest), reverse=True)
    for v in older:
        if service.versions[v].first_ready_at is not None:
            return v
    for v in older:
        if not is_blocked(service.versions[v], max_consecutive_failures):
            return v
    return None


def desired_target(service: ServiceState) -> int:
    """Replicas wanted: the last ScaleDecided target (clipped to the current bounds) when the
    service autoscales, else min_replicas; overprovision included."""
    pol = service.policy.autoscale
    low = pol.min_replicas + pol.num_overprovision
    high = pol.max_replicas + pol.num_overprovision
    if pol.autoscales and service.scale is not None:
        return max(low, min(high, service.scale.target))
    return low


def desired_split(service: ServiceState, version: int, target: int, ready_spot: int) -> tuple[int, int]:
    """(spot, on-demand) wanted for ``version``: the recorded decision when it matches the
    target, else SkyServe's fallback split computed from the observed READY spot replicas."""
    info = service.versions.get(version)
    pol = (info.policy if info is not None else service.policy).autoscale
    scale = service.scale
    if not pol.use_spot:
        return 0, target
    if scale is not None and pol.autoscales and scale.target == target and scale.spot + scale.on_demand > 0:
        return scale.spot, scale.on_demand
    return split_spot_on_demand(pol, target, ready_spot)


def serving_replicas(service: ServiceState) -> list[ReplicaState]:
    """Replicas that get new requests: READY (not shutting down) and of a traffic version."""
    traffic = set(service.traffic_versions)
    return sorted(
        (r for r in service.replicas.values() if r.version in traffic and replica_status(r) == READY),
        key=lambda r: r.replica_id,
    )


def ready_spot(
    service: ServiceState, max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
) -> int:
    """READY spot replicas of the launch version (the autoscaler's dynamic-fallback input)."""
    version = launch_version(service, max_consecutive_failures)
    return sum(
        1
        for r in service.replicas.values()
        if r.version == version and r.is_spot and replica_status(r) == READY
    )


# --------------------------------------------------------------------------- service status


class StatusReport(NamedTuple):
    status: str
    reason: str


CONTROLLER_INIT = "CONTROLLER_INIT"
REPLICA_INIT = "REPLICA_INIT"
NO_REPLICA = "NO_REPLICA"
# In a FAILED service's reason when it no longer launches (the CLI stops waiting on it).
GAVE_UP = "stopped launching"


def _last_failure(service: ServiceState, version: int | None = None) -> str:
    info = service.versions.get(service.latest_version if version is None else version)
    return info.failure_reason if info is not None else ""


def service_status(
    service: ServiceState, max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
) -> StatusReport:
    """SkyServe's service status plus a human reason. First matching row wins:

    ==================  ===================================================================
    status              when
    ==================  ===================================================================
    FAILED_CLEANUP      terminated (or shutting down with nothing left) and a cleanup failed
    TERMINATED          ``ServiceTerminated`` recorded (Stratus's own; SkyServe forgets it)
    SHUTTING_DOWN       ``ServiceDownRequested`` recorded
    READY               a READY replica of a version that receives traffic
    FAILED              no version may launch: the latest gave up after
                        ``max_consecutive_failures`` failures without ever being READY
                        (the reason says ``stopped launching``, ``GAVE_UP``)
    CONTROLLER_INIT     no endpoint assigned yet
    FAILED              SkyServe's rule: a replica failed and none is READY; the reason says
                        what Stratus does about it (retrying, what is starting)
    REPLICA_INIT        some replica is alive (PENDING..NOT_READY)
    NO_REPLICA          nothing alive (scaled to zero, or waiting to launch)
    ==================  ===================================================================

    SkyServe's CONTROLLER_FAILED (its controller or load-balancer process died) has no
    counterpart: Stratus's components serve every service and are restarted independently.
    """
    replicas = sorted(service.replicas.values(), key=lambda r: r.replica_id)
    statuses = [(r, replica_status(r)) for r in replicas]
    cleanup = [describe_failure(r) for r, s in statuses if s == FAILED_CLEANUP]
    if service.terminated:
        if cleanup:
            return StatusReport(FAILED_CLEANUP, "; ".join(cleanup))
        return StatusReport(TERMINATED, service.terminated_reason or "terminated")
    if service.down_requested:
        left = sum(1 for r in replicas if r.terminated_at is None)
        if left == 0 and cleanup:
            return StatusReport(FAILED_CLEANUP, "; ".join(cleanup))
        return StatusReport(SHUTTING_DOWN, f"down requested; {left} replica(s) still terminating")

    target = desired_target(service)
    traffic = set(service.traffic_versions)
    ready = [r for r, s in statuses if s == READY and r.version in traffic]
    version = launch_version(service, max_consecutive_failures)
    latest = service.latest_version
    notes: list[str] = []
    if version is not None and version != latest:
        gave_up = service.latest
        notes.append(
            f"version {latest} failed ({gave_up.consecutive_failures} consecutive failures without a READY "
            f"replica; last: {gave_up.failure_reason}); keeping version {version}"
        )
    elif latest not in traffic:
        new_ready = sum(1 for r, s in statuses if s == READY and r.version == latest)
        notes.append(f"blue-green update to version {latest}: {new_ready} READY, traffic on the old version")
    if service.placement_wait:
        notes.append(f"cannot place a replica: {service.placement_wait}")
    if ready:
        alive = sum(1 for _, s in statuses if s in ALIVE_STATUSES)
        reason = f"{len(ready)} of {target} replicas READY"
        if alive > len(ready):
            reason += f", {alive - len(ready)} more starting or not ready"
        return StatusReport(READY, "; ".join([reason, *notes]))
    if version is None:
        last = service.latest
        return StatusReport(
            FAILED,
            f"{last.failure_reason}; {last.consecutive_failures} consecutive failures and no replica ever "
            f"READY, {GAVE_UP} (fix the spec and `stratus update`, or `stratus down`)",
        )
    if service.endpoint is None:
        return StatusReport(CONTROLLER_INIT, "waiting for a router to assign the endpoint")
    alive_statuses = [(r, s) for r, s in statuses if s in ALIVE_STATUSES]
    failure = _last_failure(service, version)
    info = service.versions.get(version)
    if failure and info is not None and info.consecutive_failures + info.retry_failures > 0:
        notes.append(f"last failure: {failure} (retrying)")
    counts: dict[str, int] = {}
    for _, s in alive_statuses:
        counts[s] = counts.get(s, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    failed = [r for r, s in statuses if s in FAILED_STATUSES]
    if failed:  # SkyServe: at least one replica failed and none is READY
        doing = f"retrying ({summary})" if summary else "retrying"
        head = f"{len(failed)} replica(s) failed, none READY; last: {describe_failure(failed[-1])}; {doing}"
        kept = [n for n in notes if not n.startswith("last failure")]  # already in head
        return StatusReport(FAILED, "; ".join([head, *kept]))
    if alive_statuses:
        return StatusReport(REPLICA_INIT, "; ".join([f"0 of {target} replicas READY ({summary})", *notes]))
    if target == 0 and not service.policy.autoscale.autoscales:
        return StatusReport(NO_REPLICA, "; ".join(["replicas: 0 (`stratus update` adds some)", *notes]))
    if target == 0:
        return StatusReport(NO_REPLICA, "; ".join(["scaled to zero; the next request scales it up", *notes]))
    return StatusReport(NO_REPLICA, "; ".join([f"0 of {target} replicas; waiting to launch", *notes]))
