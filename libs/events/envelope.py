"""The envelope: an event as recorded in the log, with its metadata."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from .types import Event


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended, with the metadata the caller chooses."""

    event: Event
    event_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    trace: dict[str, str] = {}


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event read back from the log (or the bus)."""

    event_id: uuid.UUID
    stream_id: str
    version: int  # position within the stream, from 1
    position: int  # global, commit-ordered position
    event_type: str
    event: Event
    occurred_at: datetime
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    trace: dict[str, str] = {}

    def caused(self, event: Event, **kw: Any) -> NewEvent:
        """A follow-up event caused by this one (same correlation, causation = this)."""
        return NewEvent(
            event=event,
            causation_id=self.event_id,
            correlation_id=self.correlation_id or self.event_id,
            trace=dict(self.trace),
            **kw,
        )
