"""The autoscaler's state as a fold of the log (pure): what a restarted or second instance rebuilds.

Per service, in log order:

    QpsSampled               the router's sample (``record_sample``)
    ScaleFromZeroRequested   a held request (``request_scale_from_zero``, at its ``occurred_at``)
    ServiceUpdateRequested   a new version: the streak is forgotten, the next tick re-targets
    ScaleDecided             the target moved: target, split, the tick and the streak left after it
    ScaleEvaluated           only the hysteresis moved: the whole state after the tick
    ServiceTerminated        forgotten

``decide.evaluate`` records one of the last two for every tick that changes the state and leaves
the state untouched otherwise, so this fold gives the very state the deciding instance had
(tests/unit/test_autoscaler_fold.py checks it at every step). The live projection (``AUTOSCALER``)
folds all but the samples, which are telemetry: the deciding instance reads the last window of
them from the log instead (``store.recent_samples``), and ``with_samples`` adds them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
from msgspec.structs import replace

from libs.events.envelope import RecordedEvent
from libs.events.projection import Projection
from libs.events.snapshots import SnapshotCodec
from libs.events.types import (
    Event,
    QpsSampled,
    ScaleDecided,
    ScaleEvaluated,
    ScaleFromZeroRequested,
    ServiceTerminated,
    ServiceUpdateRequested,
)
from libs.fleet.policy import DEFAULT_QPS_WINDOW_SECONDS

from .decide import AutoscalerState, record_sample, request_scale_from_zero, reset_for_update


class AutoscalerStates(msgspec.Struct, frozen=True):
    """Every service's state (the projection's state; services with no event yet are absent)."""

    services: dict[str, AutoscalerState] = {}

    def of(self, service: str) -> AutoscalerState:
        return self.services.get(service) or AutoscalerState(service=service)


def after_decision(state: AutoscalerState, ev: ScaleDecided, at: float) -> AutoscalerState:
    """The state a ScaleDecided leaves (``at``: its tick, or when it was recorded if older)."""
    when = ev.at or at
    return replace(
        state, target=ev.target, spot=ev.spot, on_demand=ev.on_demand, decided_at=when,
        candidate_target=ev.candidate_target, candidate_since=ev.candidate_since, last_evaluated_at=when,
        wake_requested_at=None if ev.target > 0 else state.wake_requested_at, retarget=False,
    )  # fmt: skip


def after_evaluation(state: AutoscalerState, ev: ScaleEvaluated) -> AutoscalerState:
    return replace(
        state, target=ev.target, spot=ev.spot, on_demand=ev.on_demand, decided_at=ev.decided_at,
        candidate_target=ev.candidate_target, candidate_since=ev.candidate_since, last_evaluated_at=ev.at,
        wake_requested_at=ev.wake_requested_at, retarget=ev.retarget,
    )  # fmt: skip


def step(
    state: AutoscalerState, event: Event, at: float, *, window_seconds: float = DEFAULT_QPS_WINDOW_SECONDS
) -> AutoscalerState:
    """One event of ``state.service``'s stream folded in (``at``: its ``occurred_at``)."""
    if isinstance(event, QpsSampled):
        return record_sample(state, event, window_seconds=window_seconds)
    if isinstance(event, ScaleFromZeroRequested):
        return request_scale_from_zero(state, at)
    if isinstance(event, ServiceUpdateRequested):
        return reset_for_update(state)
    if isinstance(event, ScaleDecided):
        return after_decision(state, event, at)
    if isinstance(event, ScaleEvaluated):
        return after_evaluation(state, event)
    if isinstance(event, ServiceTerminated):
        return AutoscalerState(service=state.service)
    return state


def with_samples(
    state: AutoscalerState, samples: Iterable[QpsSampled], *, window_seconds: float
) -> AutoscalerState:
    """``state`` with exactly these samples (in log order), as the fold would have them."""
    out = replace(state, samples=())
    for sample in samples:
        out = record_sample(out, sample, window_seconds=window_seconds)
    return out


# --------------------------------------------------------------------------- the live projection

# Everything but the samples (telemetry, left out in SQL: see the module docstring).
DURABLE_TYPES = frozenset(
    str(t.__struct_config__.tag)
    for t in (ScaleFromZeroRequested, ServiceUpdateRequested, ScaleDecided, ScaleEvaluated, ServiceTerminated)
)


def fold_records(states: AutoscalerStates, records: Sequence[RecordedEvent]) -> AutoscalerStates:
    services = dict(states.services)  # one copy per batch, never the input's
    for rec in records:
        event = rec.event
        if isinstance(event, ServiceTerminated):
            services.pop(event.service, None)
            continue
        current = services.get(event.service) or AutoscalerState(service=event.service)
        services[event.service] = step(current, event, rec.occurred_at.timestamp())
    return AutoscalerStates(services)


def _apply(states: AutoscalerStates, rec: RecordedEvent) -> AutoscalerStates:
    return fold_records(states, [rec])


# Everything that decides what a snapshot holds: a change to any of them is a new fingerprint.
_SOURCES = (
    Path(__file__).parent / "fold.py",
    Path(__file__).parent / "decide.py",
    Path(__file__).parents[2] / "libs" / "events" / "types.py",
    Path(__file__).parents[2] / "libs" / "events" / "upcasting.py",
)


def _fingerprint() -> str:
    h = hashlib.sha256()
    for path in _SOURCES:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


SNAPSHOT_NAME = "autoscaler"

AUTOSCALER: Projection[AutoscalerStates] = Projection(
    initial=AutoscalerStates,
    apply=_apply,
    fold_batch=fold_records,
    types=DURABLE_TYPES,
    snapshots=SnapshotCodec(
        name=SNAPSHOT_NAME,
        fingerprint=_fingerprint(),
        encode=msgspec.msgpack.Encoder().encode,
        decode=msgspec.msgpack.Decoder(AutoscalerStates).decode,
    ),
)
