"""SkyServe's request-rate autoscaler, pure, with its hysteresis kept in a serializable state.

    qps      = requests in the last ``window_seconds`` (all routers summed) / window
    wanted   = clip(ceil(qps / target_qps_per_replica), min_replicas, max_replicas)
               + num_overprovision
    target   moves up only once ``wanted`` stayed above it for ``upscale_delay_seconds``,
             down only once it stayed below for ``downscale_delay_seconds``, counted as
             SkyServe counts: in decision ticks, the move happens on tick
             ``int(delay / decision_interval)`` of the streak (the first tick is 1), i.e. after
             ``(ticks - 1) * interval`` seconds; from a target of 0, any demand (qps, queued
             requests, ScaleFromZeroRequested) scales up at once.
    update   a new version resets the streak and re-targets at once within its bounds, as
             SkyServe's ``update_version`` (``reset_for_update``).
    instance_aware_least_load: with ``target_qps_per_accelerator`` the raw target is
             SkyServe's instance-aware one (``instance_aware_target``): the live replicas'
             capacities summed by accelerator; above it, one more replica per largest target;
             below it, the fewest READY replicas (largest first) whose capacity exceeds qps.
    split    spot / on-demand with base and dynamic on-demand fallback (``split_spot_on_demand``)

The whole hysteresis (direction candidate and since when) lives in ``AutoscalerState``, and
every tick that changes it is recorded: a ScaleDecided when the target moves, else a compact
ScaleEvaluated (``evaluate``). A tick that changes nothing leaves the state as it was (not even
``last_evaluated_at`` moves), so the state is a fold of the log (``fold.py``) and a restarted or
second autoscaler makes the same decisions (SkyServe loses it: #8562).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from libs.events.types import QpsSampled, ScaleDecided, ScaleEvaluated
from libs.fleet.policy import (
    DEFAULT_QPS_WINDOW_SECONDS,
    AutoscalePolicy,
    split_spot_on_demand,
    target_qps_for,
)


class QpsSample(msgspec.Struct, frozen=True, kw_only=True):
    router_id: str
    window_start: float
    window_seconds: float
    requests: int
    queued: int = 0

    @property
    def end(self) -> float:
        return self.window_start + self.window_seconds


class AutoscalerState(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    samples: tuple[QpsSample, ...] = ()
    # The last decision (None until the first one).
    target: int | None = None
    spot: int = 0
    on_demand: int = 0
    decided_at: float | None = None
    # Hysteresis: the wanted target that began the streak (its side of ``target`` is what
    # counts), and since when the wanted target has stayed on that side of ``target``.
    candidate_target: int | None = None
    candidate_since: float | None = None
    last_evaluated_at: float | None = None
    wake_requested_at: float | None = None
    # A new version was requested: the next decision re-targets at once (SkyServe's update_version).
    retarget: bool = False


class LiveReplica(msgspec.Struct, frozen=True):
    """A replica of the latest version that is PROVISIONING, STARTING or READY."""

    accelerator: str | None
    ready: bool


def reset_for_update(state: AutoscalerState) -> AutoscalerState:
    """A new version: forget the hysteresis streak and decide at once, within the new bounds."""
    return msgspec.structs.replace(
        state, candidate_target=None, candidate_since=None, last_evaluated_at=None, retarget=True
    )


def required_hold(delay: float, interval: float) -> float:
    """Seconds a streak lasts before it moves the target: SkyServe's counter reaches its
    threshold ``int(delay / interval)`` on that tick of the streak (the first counts 1)."""
    if interval <= 0:
        return delay
    ticks = int(delay / interval + 1e-9)
    return max(ticks - 1, 0) * interval


def instance_aware_target(policy: AutoscalePolicy, qps: float, live: Sequence[LiveReplica]) -> int:
    """SkyServe 0.14.1's InstanceAwareRequestRateAutoscaler raw target (before clipping)."""
    per = policy.target_qps_per_accelerator
    capacity = sum(target_qps_for(policy, r.accelerator) for r in live)
    if capacity <= 0:
        return policy.min_replicas
    if qps >= capacity:
        return len(live) + math.ceil((qps - capacity) / max(per.values()) - 1e-9)
    ready = sorted((target_qps_for(policy, r.accelerator) for r in live if r.ready), reverse=True)
    count, total = 0, 0.0
    for target in ready or [max(per.values())]:
        count += 1
        total += target
        if total > qps:
            break
    return count


def _prune(samples: tuple[QpsSample, ...], horizon: float) -> tuple[QpsSample, ...]:
    return tuple(s for s in samples if s.end > horizon)


def record_sample(
    state: AutoscalerState, sample: QpsSampled, *, window_seconds: float = DEFAULT_QPS_WINDOW_SECONDS
) -> AutoscalerState:
    """Add a router's sample (a redelivered one replaces itself); drop samples that ended
    more than a window before the newest one."""
    new = QpsSample(
        router_id=sample.router_id,
        window_start=sample.window_start,
        window_seconds=sample.window_seconds,
        requests=sample.requests,
        queued=sample.queued,
    )
    kept = [
        s for s in state.samples if not (s.router_id == new.router_id and s.window_start == new.window_start)
    ]
    kept.append(new)
    newest = max(s.end for s in kept)
    samples = tuple(
        sorted(_prune(tuple(kept), newest - window_seconds), key=lambda s: (s.window_start, s.router_id))
    )
    return msgspec.structs.replace(state, samples=samples)


def request_scale_from_zero(state: AutoscalerState, at: float) -> AutoscalerState:
    """A router holds a request and nothing is READY (``ScaleFromZeroRequested``)."""
    if state.wake_requested_at is not None:
        return state
    return msgspec.structs.replace(state, wake_requested_at=at)


def window_requests(samples: tuple[QpsSample, ...], now: float, window: float) -> tuple[float, int]:
    """(requests, queued) in ``(now - window, now]``; a sample straddling the start counts
    pro rata."""
    start = now - window
    total = 0.0
    queued = 0
    for s in samples:
        if s.end <= start:
            continue
        frac = 1.0 if s.window_start >= start or s.window_seconds <= 0 else (s.end - start) / s.window_seconds
        total += s.requests * min(1.0, frac)
        queued += s.queued
    return total, queued


def _fmt(x: float) -> str:
    return f"{x:g}"


def durable(state: AutoscalerState) -> tuple[object, ...]:
    """What a tick may change that the next ticks depend on (the samples are their own events)."""
    return (
        state.target, state.spot, state.on_demand, state.decided_at, state.candidate_target,
        state.candidate_since, state.wake_requested_at, state.retarget,
    )  # fmt: skip


def decide(
    policy: AutoscalePolicy,
    state: AutoscalerState,
    now: float,
    *,
    ready_spot: int = 0,
    live: Sequence[LiveReplica] = (),
) -> tuple[AutoscalerState, ScaleDecided | None]:
    """Evaluate at ``now``. ``ready_spot``: READY spot replicas (for dynamic fallback);
    ``live``: the latest version's live replicas (for per-accelerator targets). A tick that
    only moved the hysteresis returns its new state and no event (``evaluate`` returns the
    ScaleEvaluated to record for it)."""
    new, event = evaluate(policy, state, now, ready_spot=ready_spot, live=live)
    return new, event if isinstance(event, ScaleDecided) else None


def evaluate(
    policy: AutoscalePolicy,
    state: AutoscalerState,
    now: float,
    *,
    ready_spot: int = 0,
    live: Sequence[LiveReplica] = (),
) -> tuple[AutoscalerState, ScaleDecided | ScaleEvaluated | None]:
    """``decide``, with the event to record: a ScaleDecided when the target or its split moves,
    a ScaleEvaluated when only the hysteresis (or a pending request) changed, None when the tick
    changed nothing (the state is then returned as it was)."""
    if not policy.autoscales or policy.target_qps_per_replica is None:
        return state, None  # fixed-replica services never get decisions
    window = policy.window_seconds
    samples = _prune(state.samples, now - window)
    requests, queued = window_requests(samples, now, window)
    cur = state.target
    # A request is waiting and nothing is (or was ever decided to be) running.
    wake = (cur is None or cur == 0) and (state.wake_requested_at is not None or queued > 0)
    if (
        cur is not None
        and not wake
        and state.last_evaluated_at is not None
        and now - state.last_evaluated_at < policy.decision_interval_seconds
    ):
        return state, None

    qps = requests / window if window > 0 else 0.0
    per = policy.target_qps_per_replica
    lo, hi = policy.min_replicas, policy.max_replicas
    if policy.target_qps_per_accelerator:
        raw = instance_aware_target(policy, qps, live)
        capacity = sum(target_qps_for(policy, r.accelerator) for r in live)
        base = f"qps {qps:.1f} over {_fmt(window)}s, {len(live)} replicas rated {_fmt(capacity)} qps = {raw}"
    else:
        raw = math.ceil(qps / per - 1e-9) if qps > 0 else 0
        base = f"qps {qps:.1f} over {_fmt(window)}s / target {float(per)} per replica = {raw}"
    clipped = max(lo, min(hi, raw))
    ov = policy.num_overprovision
    wanted = clipped + ov
    if clipped != raw:
        base += f", clipped to [{lo}, {hi}] = {clipped}"
    if ov:
        base += f", + {ov} overprovision = {wanted}"

    cand, since = state.candidate_target, state.candidate_since
    held = 0.0
    new = cur
    if cur is None:
        new, why = wanted, f"initial: {base}"
        if wanted == 0 and wake:
            new = max(1, lo) + ov
            why = f"scale from zero: {queued or 'a'} request(s) waiting with no replica"
        cand = since = None
    elif cur == 0 and (wanted > 0 or wake):
        new = max(wanted, max(1, lo) + ov)
        if wanted > 0:
            why = f"scale from zero: {base}"
        else:
            why = f"scale from zero: {queued or 'a'} request(s) waiting with no replica"
        cand = since = None
    elif state.retarget:
        new, why = wanted, f"new version: {base}"
        cand = since = None
    elif not (lo + ov <= cur <= hi + ov):
        new, why = wanted, f"bounds now [{lo}, {hi}] + {ov} overprovision: {base}"
        cand = since = None
    elif wanted == cur:
        why = base if since is None else f"{base}: back at the target, the streak ended"
        cand = since = None
    else:
        up = wanted > cur
        same_side = cand is not None and since is not None and (cand > cur) == up
        if not same_side:
            cand, since = wanted, now  # kept while the streak lasts: only its side counts
        assert since is not None
        held = now - since
        delay = policy.upscale_delay_seconds if up else policy.downscale_delay_seconds
        word = "upscale" if up else "downscale"
        need = required_hold(delay, policy.decision_interval_seconds)
        rule = f"{word} delay {_fmt(delay)}s"
        if need != delay:  # counted in decision ticks, as SkyServe counts
            rule += f" ({_fmt(need)}s: tick {int(need / policy.decision_interval_seconds) + 1} of the streak)"
        if held >= need:
            new, why = wanted, f"{base}, held {_fmt(held)}s >= {rule}"
            cand = since = None
        else:
            why = f"{base}, held {_fmt(held)}s < {rule}"

    assert new is not None
    spot, on_demand = split_spot_on_demand(policy, new, ready_spot)
    next_state = msgspec.structs.replace(
        state,
        candidate_target=cand,
        candidate_since=since,
        last_evaluated_at=now,
        wake_requested_at=None if new > 0 else state.wake_requested_at,
        retarget=False,
    )
    if (new, spot, on_demand) == (cur, state.spot, state.on_demand):
        if durable(next_state) == durable(state):
            return state, None  # nothing to record, so nothing changes
        evaluated = ScaleEvaluated(
            service=state.service, at=now, target=cur, spot=state.spot, on_demand=state.on_demand,
            decided_at=state.decided_at, candidate_target=cand, candidate_since=since,
            wake_requested_at=next_state.wake_requested_at, retarget=False, reason=why,
            inputs={"qps": qps, "wanted": wanted, "held_seconds": held},
        )  # fmt: skip
        return next_state, evaluated
    if new == cur:
        why = f"on-demand fallback: {ready_spot} of {spot} spot replicas READY"
    if policy.use_spot:
        why += f"; spot {spot}, on-demand {on_demand}"
    inputs: dict[str, Any] = {
        "qps": qps,
        "requests": requests,
        "queued": queued,
        "window_seconds": window,
        "routers": len({s.router_id for s in samples}),
        "target_qps_per_replica": per,
        "raw_target": raw,
        "min_replicas": lo,
        "max_replicas": hi,
        "num_overprovision": ov,
        "previous_target": cur,
        "held_seconds": held,
        "ready_spot": ready_spot,
    }
    decision = ScaleDecided(
        service=state.service, target=new, spot=spot, on_demand=on_demand, reason=why, inputs=inputs,
        at=now, candidate_target=cand, candidate_since=since,
    )  # fmt: skip
    next_state = msgspec.structs.replace(
        next_state, target=new, spot=spot, on_demand=on_demand, decided_at=now
    )
    return next_state, decision
