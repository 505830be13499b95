"""The autoscaler as one uninterrupted in-memory process (the reference), and its log.

``Model`` drives the pure functions the service uses (``record_sample``, ``evaluate``, ...) on one
state that never leaves memory, and records what the service would append: the inputs (samples,
wake-up requests, updates, termination) and every event a tick returns. ``replay`` folds that
log the way a restarted instance does (``services/autoscaler/fold.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from libs.events.envelope import RecordedEvent
from libs.events.types import (
    Event,
    QpsSampled,
    ScaleDecided,
    ScaleEvaluated,
    ScaleFromZeroRequested,
    ServiceTerminated,
    ServiceUpdateRequested,
    event_tag,
    service_stream,
)
from libs.fleet import AutoscalePolicy
from services.autoscaler.decide import (
    AutoscalerState,
    evaluate,
    record_sample,
    request_scale_from_zero,
    reset_for_update,
)
from services.autoscaler.fold import DURABLE_TYPES, AutoscalerStates, fold_records, step, with_samples


@dataclass
class Model:
    policy: AutoscalePolicy
    service: str = "svc"
    state: AutoscalerState = field(init=False)
    log: list[tuple[Event, float]] = field(default_factory=list)  # (event, occurred_at)

    def __post_init__(self) -> None:
        self.state = AutoscalerState(service=self.service)

    def sample(
        self, t: float, qps: float, *, router: str = "r1", queued: int = 0, span: float | None = None
    ) -> None:
        """A router's sample of the ``span`` seconds (default: the policy's window) ending at ``t``."""
        w = self.policy.window_seconds if span is None else span
        ev = QpsSampled(
            service=self.service, router_id=router, window_start=t - w, window_seconds=w,
            requests=round(qps * w), queued=queued,
        )  # fmt: skip
        self.log.append((ev, t))
        self.state = record_sample(self.state, ev, window_seconds=self.policy.window_seconds)

    def wake(self, t: float) -> None:
        self.log.append((ScaleFromZeroRequested(service=self.service, router_id="r1"), t))
        self.state = request_scale_from_zero(self.state, t)

    def update(self, t: float, policy: AutoscalePolicy, version: int) -> None:
        self.log.append((ServiceUpdateRequested(service=self.service, version=version), t))
        self.state = reset_for_update(self.state)
        self.policy = policy

    def terminate(self, t: float) -> None:
        self.log.append((ServiceTerminated(service=self.service), t))
        self.state = AutoscalerState(service=self.service)

    def tick(self, t: float, *, ready_spot: int = 0) -> ScaleDecided | ScaleEvaluated | None:
        self.state, ev = evaluate(self.policy, self.state, t, ready_spot=ready_spot)
        if ev is not None:
            self.log.append((ev, t))
        return ev

    def recorded(self) -> list[ScaleDecided | ScaleEvaluated]:
        return [e for e, _ in self.log if isinstance(e, (ScaleDecided, ScaleEvaluated))]


def replay(service: str, log: Sequence[tuple[Event, float]], *, window_seconds: float) -> AutoscalerState:
    """Every event folded, samples included (an audit's view)."""
    state = AutoscalerState(service=service)
    for ev, at in log:
        state = step(state, ev, at, window_seconds=window_seconds)
    return state


def records(log: Sequence[tuple[Event, float]]) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            event_id=uuid.uuid4(),
            stream_id=service_stream(ev.service),
            version=i,
            position=i,
            event_type=event_tag(ev),
            event=ev,
            occurred_at=datetime.fromtimestamp(at, UTC),
        )
        for i, (ev, at) in enumerate(log, start=1)
    ]


def rebuilt(service: str, log: Sequence[tuple[Event, float]], *, window_seconds: float) -> AutoscalerState:
    """What the service rebuilds: the live projection (no samples: it leaves them out in SQL),
    then the samples read from the log's window."""
    recs = records(log)
    durable = fold_records(AutoscalerStates(), [r for r in recs if r.event_type in DURABLE_TYPES])
    ends = [i for i, r in enumerate(recs) if isinstance(r.event, ServiceTerminated)]
    since = ends[-1] + 1 if ends else 0  # a terminated service's samples are not read again
    samples = [r.event for r in recs[since:] if isinstance(r.event, QpsSampled)]
    return with_samples(durable.of(service), samples, window_seconds=window_seconds)
