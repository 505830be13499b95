"""What the dashboard charts, folded from the log (pure: records in, series out).

- QPS: each ``QpsSampled`` window's requests / its length, summed over routers per window;
- ready replicas: the count after each event that changes it, starting from the replicas ready
  when the range begins (from ``FLEET.as_of``);
- decisions: scale decisions, placements and placement waits, failures, with their reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from libs.events.envelope import RecordedEvent
from libs.events.types import (
    PlacementUnavailable,
    Preempted,
    QpsSampled,
    ReplicaFailed,
    ReplicaLaunchFailed,
    ReplicaNotReady,
    ReplicaProcessExited,
    ReplicaReady,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ScaleDecided,
)

TYPES = [t.__name__ for t in (
    QpsSampled, ReplicaReady, ReplicaNotReady, Preempted, ReplicaTerminated, ReplicaFailed,
    ReplicaProcessExited, ReplicaLaunchFailed, ReplicaScheduled, ReplicaTerminationRequested,
    ScaleDecided, PlacementUnavailable,
)]  # fmt: skip
NOT_READY = (ReplicaNotReady, Preempted, ReplicaTerminated, ReplicaFailed, ReplicaProcessExited)
MAX_DECISIONS = 50


@dataclass
class History:
    qps: list[tuple[float, float]] = field(default_factory=list)  # (window start, requests/s)
    ready: list[tuple[float, int]] = field(default_factory=list)  # (time, ready replicas)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # newest last


def _decision(rec: RecordedEvent) -> dict[str, Any] | None:
    e = rec.event
    at = rec.occurred_at.timestamp()
    if isinstance(e, ScaleDecided):
        text = f"target {e.target} ({e.spot} spot, {e.on_demand} on-demand): {e.reason}"
    elif isinstance(e, ReplicaScheduled):
        p = e.placement
        where = "/".join(x for x in (p.cloud, p.region, p.zone) if x)
        text = f"replica {e.replica_id} placed on {where or '?'}" + (f": {e.reason}" if e.reason else "")
    elif isinstance(e, PlacementUnavailable):
        text = f"cannot place a replica: {e.reason}"
    elif isinstance(e, ReplicaLaunchFailed):
        text = f"replica {e.replica_id} launch failed ({e.kind}): {e.message}"
    elif isinstance(e, ReplicaFailed):
        text = f"replica {e.replica_id} {e.status}: {e.reason}"
    elif isinstance(e, Preempted):
        text = f"replica {e.replica_id} preempted on {e.placement.cloud or '?'}/{e.placement.zone or '?'}"
    elif isinstance(e, ReplicaTerminationRequested):
        text = f"replica {e.replica_id} terminating: {e.reason}"
    else:
        return None
    return {"at": at, "type": rec.event_type, "position": rec.position, "reason": text}


def history(
    service: str, ready_at_start: Iterable[int], start: float, records: Iterable[RecordedEvent]
) -> History:
    out = History()
    ready = set(ready_at_start)
    out.ready.append((start, len(ready)))
    windows: dict[float, float] = {}
    for rec in records:
        e = rec.event
        if e.service != service:
            continue
        if isinstance(e, QpsSampled):
            if e.window_seconds > 0:
                windows[e.window_start] = windows.get(e.window_start, 0.0) + e.requests / e.window_seconds
            continue
        before = len(ready)
        if isinstance(e, ReplicaReady):
            ready.add(e.replica_id)
        elif isinstance(e, NOT_READY):
            ready.discard(e.replica_id)
        if len(ready) != before:
            out.ready.append((rec.occurred_at.timestamp(), len(ready)))
        decision = _decision(rec)
        if decision is not None:
            out.decisions.append(decision)
    out.qps = sorted(windows.items())
    out.decisions = out.decisions[-MAX_DECISIONS:]
    return out
