"""Errors of the events package.

    EventsError
    ├── ConcurrencyConflict      expected stream version did not match (retry after re-reading)
    ├── ProjectionFailed         a known event could not be decoded or folded: the process stops
    ├── PermanentError           retrying cannot help: a consumer terms and dead-letters the message
    │   ├── EventDecodeError     a payload that no known type or upcaster can read (poison)
    │   └── UnknownEventType     a tag that no registered type has (poison)
    └── TransientError           may succeed later: a consumer naks the message with a backoff delay
        ├── StoreUnavailable     Postgres could not be reached
        ├── BusUnavailable       NATS/JetStream could not be reached or did not ack
        └── ProjectionBehind     a live projection did not reach a position in time

Adapters translate asyncpg and nats errors into these with ``raise X from exc``. Handlers raise
``TransientError`` or ``PermanentError`` (or subclasses) to say what should happen next.
"""

from __future__ import annotations


class EventsError(Exception):
    """Base of every error raised by libs.events."""


class ConcurrencyConflict(EventsError):
    def __init__(self, stream_id: str, expected_version: int, actual_version: int) -> None:
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"stream {stream_id!r}: expected version {expected_version} "
            f"but the stream is at version {actual_version}; re-read the stream and retry"
        )


class ProjectionFailed(EventsError):
    """A projection met an event of a type it knows but cannot decode or fold (a payload from a
    newer schema, or a bug): folding past it would build a wrong state, so the process stops."""

    def __init__(self, position: int, stream_id: str, event_type: str, reason: str) -> None:
        self.position = position
        self.stream_id = stream_id
        self.event_type = event_type
        self.reason = reason
        super().__init__(
            f"projection cannot fold the {event_type} event at position {position} of stream"
            f" {stream_id!r}: {reason}"
        )


class PermanentError(EventsError):
    """Retrying will not help (poison input, a rule violation): record it and move on."""


class TransientError(EventsError):
    """The operation may succeed later (a dependency is down or behind): retry with backoff."""


class UnknownEventType(PermanentError):
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}: no registered type has this tag")


class EventDecodeError(PermanentError):
    def __init__(self, event_type: str, reason: str) -> None:
        self.event_type = event_type
        self.reason = reason
        super().__init__(f"cannot decode event of type {event_type!r}: {reason}")


class StoreUnavailable(TransientError):
    """Postgres could not be reached; the operation may be retried later."""


class BusUnavailable(TransientError):
    """NATS/JetStream could not be reached; the operation may be retried later."""


class ProjectionBehind(TransientError):
    def __init__(self, wanted: int, reached: int, timeout: float) -> None:
        self.wanted = wanted
        self.reached = reached
        super().__init__(
            f"projection reached position {reached}, not {wanted}, within {timeout}s; retry later"
        )
