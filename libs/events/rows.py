"""The store's plain data: what an append returns, a batched append's share, a page of rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from .codec import decode
from .envelope import NewEvent, RecordedEvent
from .errors import EventDecodeError, UnknownEventType
from .types import Event


@dataclass(frozen=True, slots=True)
class AppendResult:
    positions: list[int]
    versions: list[int]

    @property
    def last_position(self) -> int:
        return self.positions[-1] if self.positions else 0


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's share of a batched append. ``expected_version`` None = no check."""

    stream_id: str
    events: Sequence[Event | NewEvent]
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A row of the log that this code cannot read (an unknown tag, or a payload that no type or
    upcaster accepts): poison for a projection, which passes over it instead of stopping."""

    position: int
    stream_id: str
    event_type: str
    error: UnknownEventType | EventDecodeError


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the log: the rows read, decoded or not, in position order."""

    records: list[RecordedEvent]
    undecodable: list[Undecodable]
    # Every position up to here has been read (decoded or not) or excluded by the query's type
    # filter: the last row read, or, at the end of the log, the log's head. ``after`` if none.
    last_position: int
    rows: int  # rows read: fewer than the limit means the end of the log (for this query)

    def strict(self) -> list[RecordedEvent]:
        """The records, or the first row's decoding error if any row could not be read."""
        if self.undecodable:
            raise self.undecodable[0].error
        return self.records


def row_to_recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        event_id=row[1],
        stream_id=row[2],
        version=row[3],
        event_type=row[4],
        event=decode(row[4], row[5], row[6]),
        occurred_at=row[7],
        causation_id=row[8],
        correlation_id=row[9],
        trace=json.loads(row[10]) if row[10] else {},
    )
