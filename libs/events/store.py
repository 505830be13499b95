"""The Postgres event store (asyncpg): append with optimistic concurrency, read, tail.

Positions are handed out in commit order (see ``schema.py``), so reading "everything after
position P" never skips an event whose transaction committed late.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from libs.telemetry.tracing import append_span, tracing_on

from .causation import stamp
from .codec import encode
from .envelope import NewEvent, RecordedEvent
from .errors import ConcurrencyConflict, EventDecodeError, StoreUnavailable, UnknownEventType
from .rows import AppendResult, Page, StreamAppend, Undecodable, row_to_recorded
from .schema import NOTIFY_CHANNEL, migrate
from .tracking import track_on
from .types import Event

# The plain data the store hands out lives in rows.py; importers of store keep finding it here.
__all__ = [
    "AppendResult", "EventStore", "Page", "StreamAppend", "Transaction", "Undecodable", "row_to_recorded",
]

_CONFLICT_SQLSTATE = "SE001"

# Postgres unreachable, or the connection lost: the store's StoreUnavailable (transient:
# outcomes.py). Only around the store's own calls, never around a caller's code.
_UNREACHABLE = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                asyncpg.CannotConnectNowError)  # fmt: skip


@contextmanager
def _unreachable(what: str) -> Iterator[None]:
    try:
        yield
    except _UNREACHABLE as exc:
        raise StoreUnavailable(f"cannot {what}: Postgres is unreachable ({exc!r})") from exc

_SELECT = (
    "SELECT position, event_id, stream_id, version, event_type, schema_version, payload::text,"
    " occurred_at, causation_id, correlation_id, trace::text FROM stratus_events"
)


def _as_new(e: Event | NewEvent) -> NewEvent:
    # Unset causation/correlation/trace come from the cause being handled (causation.py).
    return stamp(e if isinstance(e, NewEvent) else NewEvent(event=e))


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None) == _CONFLICT_SQLSTATE:
        detail = json.loads(getattr(exc, "detail", None) or "{}")
        return ConcurrencyConflict(
            detail.get("stream", "?"), detail.get("expected", -1), detail.get("actual", -1)
        )
    return exc


async def append_on(
    conn: asyncpg.Connection, batches: Sequence[StreamAppend], *, now: datetime | None = None
) -> AppendResult:
    """Append on an existing connection (inside the caller's transaction, if any).

    Traced as an ``append`` span, child of the current one; the events carry its context."""
    if not tracing_on():
        return await _append_on(conn, batches, now)
    with append_span(batches[0].stream_id if batches else "", sum(len(b.events) for b in batches)) as span:
        result = await _append_on(conn, batches, now)
        if result.positions:
            span.set_attribute("stratus.position", result.positions[0])
        return result


async def _append_on(
    conn: asyncpg.Connection, batches: Sequence[StreamAppend], now: datetime | None
) -> AppendResult:
    streams: list[str] = []
    expected: list[int | None] = []
    ids: list[uuid.UUID] = []
    types: list[str] = []
    schemas: list[int] = []
    payloads: list[str] = []
    causations: list[uuid.UUID | None] = []
    correlations: list[uuid.UUID | None] = []
    traces: list[str] = []
    for batch in batches:
        for i, item in enumerate(batch.events):
            new = _as_new(item)
            tag, schema, payload = encode(new.event)
            streams.append(batch.stream_id)
            expected.append(batch.expected_version if i == 0 else None)
            ids.append(new.event_id)
            types.append(tag)
            schemas.append(schema)
            payloads.append(payload.decode())
            causations.append(new.causation_id)
            correlations.append(new.correlation_id)
            traces.append(json.dumps(new.trace))
    if not ids:
        return AppendResult([], [])
    try:
        rows = await conn.fetch(
            "SELECT out_position, out_version FROM stratus_append("
            "$1::text[], $2::int[], $3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::uuid[],"
            " $8::uuid[], $9::jsonb[], $10)",
            streams, expected, ids, types, schemas, payloads, causations, correlations, traces,
            now or datetime.now(UTC),
        )  # fmt: skip
    except asyncpg.PostgresError as exc:
        raise _translate(exc) from exc
    return AppendResult([r[0] for r in rows], [r[1] for r in rows])


class EventStore:
    """The append-only event log in Postgres. Create with ``await EventStore.connect(dsn)``."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> EventStore:
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StoreUnavailable(f"cannot connect to Postgres at {dsn}: {exc}") from exc
        store = cls(pool, dsn)
        async with pool.acquire() as conn:
            await migrate(conn)
        return store

    async def close(self) -> None:
        await self.pool.close()

    # ------------------------------------------------------------------ appending

    async def append(
        self, stream_id: str, events: Sequence[Event | NewEvent], *, expected_version: int | None = None,
        now: datetime | None = None,
    ) -> AppendResult:  # fmt: skip
        """Append events to one stream. ``expected_version``: None = any, 0 = must not exist."""
        return await self.append_batches([StreamAppend(stream_id, events, expected_version)], now=now)

    async def append_batches(
        self, batches: Sequence[StreamAppend], *, now: datetime | None = None
    ) -> AppendResult:
        """Append to several streams in one transaction (all or nothing)."""
        with _unreachable("append"):
            async with self.pool.acquire() as conn:
                return await append_on(conn, batches, now=now)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A unit of work: appends and tracking rows that commit together. Postgres unreachable
        as it begins is StoreUnavailable; errors raised inside pass through as they are."""
        async with AsyncExitStack() as stack:
            with _unreachable("begin a transaction"):
                conn = await stack.enter_async_context(self.pool.acquire())
                await stack.enter_async_context(conn.transaction())
            yield Transaction(conn)

    # ------------------------------------------------------------------ reading

    async def stream_version(self, stream_id: str) -> int:
        with _unreachable("read a stream's version"):
            v = await self.pool.fetchval(
                "SELECT coalesce(max(version), 0) FROM stratus_events WHERE stream_id = $1", stream_id
            )
        return int(v)

    async def read_stream(self, stream_id: str, *, from_version: int = 1) -> list[RecordedEvent]:
        with _unreachable("read a stream"):
            rows = await self.pool.fetch(
                _SELECT + " WHERE stream_id = $1 AND version >= $2 ORDER BY version", stream_id, from_version
            )
        return [row_to_recorded(r) for r in rows]

    async def read_all(
        self, *, after: int = 0, limit: int = 1000, types: Iterable[str] | None = None,
        until: int | None = None, before_time: datetime | None = None,
    ) -> list[RecordedEvent]:  # fmt: skip
        """Events with position > ``after`` in position order (at most ``limit``).

        Raises ``UnknownEventType`` / ``EventDecodeError`` on a row this code cannot read;
        ``read_page`` returns such rows apart instead.
        """
        page = await self.read_page(
            after=after, limit=limit, types=types, until=until, before_time=before_time
        )
        return page.strict()

    async def read_page(
        self, *, after: int = 0, limit: int = 1000, types: Iterable[str] | None = None,
        until: int | None = None, before_time: datetime | None = None,
        exclude: Iterable[str] | None = None, conn: asyncpg.Connection | None = None,
    ) -> Page:  # fmt: skip
        """Like ``read_all``, but rows that cannot be decoded are returned apart, not raised.

        ``exclude``: tags left out in SQL (never sent or decoded: telemetry a projection does not
        fold). With it, a page that reaches the end of the log reports the log's head as its
        ``last_position``, so a reader's position moves past the excluded rows too. That is
        exact because positions are handed out in commit order: every position up to the head
        read first is committed, so the page (read second, capped at that head) sees them all.
        ``conn``: read on this connection instead of the pool's (a tail reads on its own).
        """
        db: asyncpg.Connection | asyncpg.Pool = conn if conn is not None else self.pool
        clauses = ["position > $1"]
        args: list[Any] = [after]
        head: int | None = None
        excluded = sorted(set(exclude)) if exclude is not None else []
        if excluded:
            head = int(await db.fetchval("SELECT coalesce(max(position), 0) FROM stratus_events"))
            until = head if until is None else min(until, head)
            args.append(excluded)
            clauses.append(f"NOT (event_type = ANY(${len(args)}::text[]))")
        if types is not None:
            args.append(list(types))
            clauses.append(f"event_type = ANY(${len(args)}::text[])")
        if until is not None:
            args.append(until)
            clauses.append(f"position <= ${len(args)}")
        if before_time is not None:
            args.append(before_time)
            clauses.append(f"occurred_at <= ${len(args)}")
        args.append(limit)
        rows = await db.fetch(
            f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY position LIMIT ${len(args)}", *args
        )
        records: list[RecordedEvent] = []
        undecodable: list[Undecodable] = []
        for r in rows:
            try:
                records.append(row_to_recorded(r))
            except (UnknownEventType, EventDecodeError) as exc:
                undecodable.append(Undecodable(r[0], r[2], r[4], exc))
        last = rows[-1][0] if rows else after
        if head is not None and until is not None and len(rows) < limit:
            last = max(last, until)  # the end (of the log, or of ``until``): all of it was seen
        return Page(records, undecodable, last, len(rows))

    async def last_position(self) -> int:
        with _unreachable("read the log's head"):
            v = await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM stratus_events")
        return int(v)

    async def position_at(self, when: datetime) -> int:
        """The last position recorded at or before ``when`` (for audits: state as of a time)."""
        v = await self.pool.fetchval(
            "SELECT coalesce(max(position), 0) FROM stratus_events WHERE occurred_at <= $1", when
        )
        return int(v)

    async def tail(
        self, *, after: int = 0, batch_size: int = 1000, poll_interval: float = 1.0,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[RecordedEvent]:  # fmt: skip
        """Every event after ``after``, forever (until ``stop``), woken by LISTEN/NOTIFY.

        The poll interval is only a safety net for a lost notification. A row that cannot be
        decoded raises (``tail_pages`` hands such rows over instead).
        """
        async for page in self.tail_pages(
            after=after, batch_size=batch_size, poll_interval=poll_interval, stop=stop
        ):
            for rec in page.strict():
                yield rec

    async def tail_pages(
        self, *, after: int = 0, batch_size: int = 1000, poll_interval: float = 1.0,
        stop: asyncio.Event | None = None, exclude: Iterable[str] | None = None,
    ) -> AsyncIterator[Page]:  # fmt: skip
        """``tail`` by pages (``read_page``): each page that moves past the previous one.

        With ``exclude``, a page may hold no rows and only move the position (past excluded
        rows). The LISTEN connection is watched: if it goes away (a Postgres restart), this
        raises ``StoreUnavailable`` instead of silently falling back to polling, so the caller
        re-opens it (``LiveProjection`` does, with a backoff, and logs both ends).
        """
        wake = asyncio.Event()
        lost = asyncio.Event()

        def on_notify(*_: object) -> None:
            wake.set()

        def on_lost(*_: object) -> None:
            lost.set()
            wake.set()

        try:
            listener: asyncpg.Connection = await asyncpg.connect(self.dsn)
            await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"cannot LISTEN on Postgres: {exc!r}") from exc
        listener.add_termination_listener(on_lost)
        try:
            position = after
            while stop is None or not stop.is_set():
                if lost.is_set() or listener.is_closed():
                    raise StoreUnavailable("the LISTEN connection to Postgres was lost")
                wake.clear()
                # On the LISTEN connection: a tail never waits for the pool (whose connections may
                # all be held by transactions that wait for this very tail to advance).
                page = await self.read_page(after=position, limit=batch_size, exclude=exclude, conn=listener)
                if page.last_position > position:
                    position = page.last_position
                    yield page
                if page.rows == batch_size:
                    continue
                waiters = [asyncio.ensure_future(wake.wait())]
                if stop is not None:
                    waiters.append(asyncio.ensure_future(stop.wait()))
                _done, pending = await asyncio.wait(
                    waiters, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
                for p in pending:
                    p.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            if not listener.is_closed():
                try:
                    await asyncio.wait_for(listener.close(), 2.0)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    listener.terminate()

    # ------------------------------------------------------------------ dead letters and tracking

    async def dead_letters(self, consumer: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT id, consumer, position, event_id, subject, reason, deliveries, recorded_at"
            " FROM stratus_dead_letters WHERE $1::text IS NULL OR consumer = $1 ORDER BY id",
            consumer,
        )
        return [dict(r) for r in rows]

    async def handled_positions(self, consumer: str) -> list[int]:
        rows = await self.pool.fetch(
            "SELECT position FROM stratus_tracking WHERE consumer = $1 ORDER BY position", consumer
        )
        return [r[0] for r in rows]


class Transaction:
    """What a handler may do inside its unit of work."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def append(
        self, stream_id: str, events: Sequence[Event | NewEvent], *, expected_version: int | None = None
    ) -> AppendResult:
        return await append_on(self.conn, [StreamAppend(stream_id, events, expected_version)])

    async def append_batches(self, batches: Sequence[StreamAppend]) -> AppendResult:
        return await append_on(self.conn, batches)

    async def track(self, consumer: str, position: int) -> bool:
        """Record that ``consumer`` handled ``position``; False if it already had (a tracking
        row, or a position at or below the consumer's floor: see ``tracking.py``)."""
        return await track_on(self.conn, consumer, position)

    async def record_dead_letter(
        self, consumer: str, *, reason: str, position: int | None = None, event_id: str | None = None,
        subject: str = "", payload: bytes | None = None, deliveries: int = 1,
    ) -> None:  # fmt: skip
        await self.conn.execute(
            "INSERT INTO stratus_dead_letters"
            " (consumer, position, event_id, subject, reason, payload, deliveries)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            consumer, position, event_id, subject, reason, payload, deliveries,
        )  # fmt: skip
