"""The prober's pure decision: one probe result -> new probe state + events (SkyServe semantics).

- Never READY yet: failures are ignored until ``initial_delay_seconds`` after launch; a
  failure after that is ``ReplicaFailed(FAILED_INITIAL_DELAY)``.
- First success: ``ReplicaReady``. Any success after failures resets the streak, and a
  NOT_READY replica gets ``ReplicaReady`` again.
- READY once, now failing: every failure is a ``ProbeFailed``; the first of a streak on a
  READY replica also ``ReplicaNotReady``; once the streak lasted
  ``failure_threshold_seconds``, ``ReplicaFailed(FAILED_PROBING)``.
- After ``ReplicaFailed`` the state is terminal: further results produce nothing.
"""

from __future__ import annotations

import msgspec

from libs.events.types import Event, ProbeFailed, ReplicaFailed, ReplicaNotReady, ReplicaReady
from libs.fleet.policy import ProbePolicy

from .errors import ProbeError


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    reason: str = ""  # why it failed: "HTTP 500", "timeout after 15s", ...
    status_code: int | None = None

    @classmethod
    def success(cls, status_code: int = 200) -> ProbeResult:
        return cls(ok=True, status_code=status_code)

    @classmethod
    def failure(cls, reason: str, status_code: int | None = None) -> ProbeResult:
        return cls(ok=False, reason=reason, status_code=status_code)


class ProbeState(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    replica_id: int
    version: int = 1
    url: str = ""
    launched_at: float
    ready: bool = False
    ever_ready: bool = False
    consecutive_failures: int = 0
    failing_since: float | None = None
    last_reason: str = ""
    last_probe_at: float | None = None
    failed: bool = False  # ReplicaFailed emitted: stop probing


def probe_due(state: ProbeState, policy: ProbePolicy, now: float, round_seconds: float) -> bool:
    """Whether a replica is probed in the round at ``now``: every ``interval_seconds`` of its
    version (SkyServe's ``endpoint_probe_interval_seconds``; the prober's round when the spec
    predates it). Until first READY it is probed every round, so startup is seen at once."""
    if state.last_probe_at is None:
        return True
    interval = policy.interval_seconds if policy.interval_seconds is not None else round_seconds
    if not state.ever_ready:
        interval = min(interval, round_seconds)
    # Half a round of slack: a round that starts a little early must not skip a whole interval.
    return now - state.last_probe_at >= interval - round_seconds / 2


def classify_status(status_code: int) -> ProbeResult:
    """Only 2xx is success."""
    if 200 <= status_code < 300:
        return ProbeResult.success(status_code)
    return ProbeResult.failure(f"HTTP {status_code}", status_code)


def classify_error(error: ProbeError) -> ProbeResult:
    """A failed probe's reason: the adapter's translated error, already a short sentence."""
    return ProbeResult.failure(str(error) or type(error).__name__)


def decide(
    state: ProbeState, result: ProbeResult, now: float, policy: ProbePolicy
) -> tuple[ProbeState, list[Event]]:
    """Fold one probe result taken at ``now`` into the replica's probe state."""
    if state.failed:
        return state, []
    svc, rid = state.service, state.replica_id
    if result.ok:
        fresh = msgspec.structs.replace(
            state,
            ready=True,
            ever_ready=True,
            consecutive_failures=0,
            failing_since=None,
            last_reason="",
            last_probe_at=now,
        )
        if state.ready:
            return fresh, []
        return fresh, [ReplicaReady(service=svc, replica_id=rid, url=state.url, version=state.version)]

    reason = result.reason or "probe failed"
    if not state.ever_ready:
        waited = now - state.launched_at
        if waited < policy.initial_delay_seconds:
            return msgspec.structs.replace(state, last_reason=reason, last_probe_at=now), []
        failed = msgspec.structs.replace(state, failed=True, last_reason=reason, last_probe_at=now)
        why = (
            f"not ready {policy.initial_delay_seconds:g}s after launch "
            f"(initial_delay_seconds); last probe: {reason}"
        )
        return failed, [ReplicaFailed(service=svc, replica_id=rid, status="FAILED_INITIAL_DELAY", reason=why)]

    since = state.failing_since if state.failing_since is not None else now
    count = state.consecutive_failures + 1
    events: list[Event] = [
        ProbeFailed(service=svc, replica_id=rid, reason=reason, consecutive_failures=count)
    ]
    if state.ready:
        events.append(ReplicaNotReady(service=svc, replica_id=rid, reason=reason))
    failing_for = now - since
    done = failing_for >= policy.failure_threshold_seconds
    if done:
        why = (
            f"readiness probe failing for {failing_for:g}s ({count} consecutive failures, "
            f"threshold {policy.failure_threshold_seconds:g}s); last: {reason}"
        )
        events.append(ReplicaFailed(service=svc, replica_id=rid, status="FAILED_PROBING", reason=why))
    new = msgspec.structs.replace(
        state,
        ready=False,
        consecutive_failures=count,
        failing_since=since,
        last_reason=reason,
        last_probe_at=now,
        failed=done,
    )
    return new, events
