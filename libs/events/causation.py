"""Causation and correlation: which event (or request) caused an append, and which user action.

The ids are carried implicitly in a ``ContextVar`` so that no handler has to thread them through
its calls: the service host sets the cause around each handled message (``caused_by(rec)``),
the API sets a fresh one per request (``new_request_cause()``), and ``stamp`` (called by the
store for every event it appends) fills whatever the caller left unset. An explicit
``NewEvent.causation_id`` / ``correlation_id`` always wins.

- causation id: the event being handled when the append was made, or the API request's id;
- correlation id: the id of the user action at the root of the chain (the request's id),
  inherited unchanged by everything it causes;
- trace: the W3C trace context of the span the append was made in (``libs.telemetry.tracing``),
  else the cause's.

``causation_chain(store, event_id)`` walks the chain back, from an event to its root.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import msgspec

from libs.telemetry.tracing import current_carrier

from .envelope import NewEvent, RecordedEvent

if TYPE_CHECKING:
    from .store import EventStore


@dataclass(frozen=True, slots=True)
class Cause:
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    trace: dict[str, str] = field(default_factory=dict)


_current: ContextVar[Cause | None] = ContextVar("stratus_cause", default=None)


def current_cause() -> Cause | None:
    return _current.get()


def cause_of(rec: RecordedEvent) -> Cause:
    """What an append made while handling ``rec`` carries: causation = it, its correlation."""
    return Cause(rec.event_id, rec.correlation_id or rec.event_id, dict(rec.trace))


@contextmanager
def using_cause(cause: Cause | None) -> Iterator[Cause | None]:
    token = _current.set(cause)
    try:
        yield cause
    finally:
        _current.reset(token)


def caused_by(rec: RecordedEvent) -> AbstractContextManager[Cause | None]:
    """``with caused_by(rec):`` appends inside carry ``rec`` as their cause."""
    return using_cause(cause_of(rec))


def new_request_cause(request_id: uuid.UUID | None = None) -> Cause:
    """A user action's cause: the request is its own causation and correlation."""
    rid = request_id or uuid.uuid4()
    return Cause(rid, rid)


def with_trace(cause: Cause | None, trace: dict[str, str]) -> Cause:
    base = cause or Cause()
    return replace(base, trace=dict(trace))


def stamp(new: NewEvent) -> NewEvent:
    """``new`` with the current cause filling the metadata it left unset; its trace context is
    the current span's (the append's), else the cause's."""
    cause = _current.get()
    updates: dict[str, object] = {}
    if not new.trace:
        trace = current_carrier() or (cause.trace if cause is not None else {})
        if trace:
            updates["trace"] = dict(trace)
    if cause is not None:
        if new.causation_id is None and cause.causation_id is not None:
            updates["causation_id"] = cause.causation_id
        if new.correlation_id is None and cause.correlation_id is not None:
            updates["correlation_id"] = cause.correlation_id
    return msgspec.structs.replace(new, **updates) if updates else new


async def causation_chain(
    store: EventStore, event_id: uuid.UUID, *, max_depth: int = 100
) -> list[RecordedEvent]:
    """``event_id``'s event, then what caused it, and so on back to the root (oldest last).

    The walk ends at an event whose cause is not an event in the log (the API request that
    made it, or none), or after ``max_depth`` steps (a guard against a corrupt cycle).
    """
    from .store import _SELECT, row_to_recorded

    chain: list[RecordedEvent] = []
    seen: set[uuid.UUID] = set()
    next_id: uuid.UUID | None = event_id
    async with store.pool.acquire() as conn:
        while next_id is not None and next_id not in seen and len(chain) < max_depth:
            seen.add(next_id)
            row = await conn.fetchrow(_SELECT + " WHERE event_id = $1", next_id)
            if row is None:
                break
            rec = row_to_recorded(row)
            chain.append(rec)
            next_id = rec.causation_id
    return chain


async def last_cause(store: EventStore, stream_id: str) -> Cause | None:
    """The cause an append to ``stream_id`` made by a loop (not a handler) carries: the stream's
    last event (e.g. a probe's verdict on a replica follows from its launch)."""
    row = await store.pool.fetchrow(
        "SELECT event_id, correlation_id, trace::text FROM stratus_events WHERE stream_id = $1"
        " ORDER BY version DESC LIMIT 1",
        stream_id,
    )
    if row is None:
        return None
    return Cause(row[0], row[1] or row[0], json.loads(row[2]) if row[2] else {})
