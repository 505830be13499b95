"""Errors of the events package.

    EventsError
    ├── ConcurrencyConflict      expected stream version did not match (retry after re-reading)
    ├── EventDecodeError         a payload that no known type or upcaster can read (poison)
    ├── UnknownEventType         a tag that no registered type has (poison)
    ├── StoreUnavailable         Postgres could not be reached (transient: retry later)
    └── BusUnavailable           NATS/JetStream could not be reached (transient: retry later)

Adapters translate asyncpg and nats errors into these with ``raise X from exc``.
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


class UnknownEventType(EventsError):
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}: no registered type has this tag")


class EventDecodeError(EventsError):
    def __init__(self, event_type: str, reason: str) -> None:
        self.event_type = event_type
        self.reason = reason
        super().__init__(f"cannot decode event of type {event_type!r}: {reason}")


class StoreUnavailable(EventsError):
    """Postgres could not be reached; the operation may be retried later."""


class BusUnavailable(EventsError):
    """NATS/JetStream could not be reached; the operation may be retried later."""
