"""Projections: state folded from the log, rebuildable at any time and as of any past moment.

A ``Projection[S]`` is plain data: a factory for the empty state and a pure
``apply(state, rec) -> state``. ``rebuild`` folds the whole log in batches; ``as_of`` folds only
what had happened at a position or a time (audits). ``LiveProjection`` keeps the state current
by tailing the store and lets a bus handler ``wait_for`` the position of the message it holds,
so it never decides on a projection older than the event it is reacting to.

A row this code cannot decode (a tag no registered type has, or a payload no type or upcaster
reads, e.g. written by a newer version) is poison for a projection: it is passed over with a
warning and counted in ``Snapshot.skipped``, so that one such row neither crash-loops a service
at start-up nor stops its live projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Generic, TypeVar

from .envelope import RecordedEvent
from .errors import ProjectionBehind
from .lifecycle import Backoff, sleep_or_stop
from .outcomes import TRANSIENT_ERRORS
from .store import EventStore, Page

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[S]):
    state: S
    position: int  # every event up to here has been folded in (0: none)
    skipped: int = 0  # undecodable rows passed over on the way (see the module docstring)


def _warn_undecodable(page: Page) -> int:
    for bad in page.undecodable:
        log.warning(
            "projection: skipping event at position %d of stream %r: %s",
            bad.position, bad.stream_id, bad.error,
        )  # fmt: skip
    return len(page.undecodable)


@dataclass(frozen=True, slots=True)
class Projection(Generic[S]):
    initial: Callable[[], S]
    apply: Callable[[S, RecordedEvent], S]
    # Event tags this projection reads; None = all. Other events only advance the position.
    types: frozenset[str] | None = None
    # Optional: fold a whole batch at once (may mutate what it builds, never its input state);
    # rebuilds use it to avoid one copy-on-write per event.
    fold_batch: Callable[[S, Sequence[RecordedEvent]], S] | None = None

    def fold(self, state: S, records: Iterable[RecordedEvent]) -> S:
        wanted = [r for r in records if self.types is None or r.event_type in self.types]
        if self.fold_batch is not None:
            return self.fold_batch(state, wanted) if wanted else state
        for rec in wanted:
            state = self.apply(state, rec)
        return state

    async def rebuild(
        self, store: EventStore, *, after: Snapshot[S] | None = None, batch_size: int = 1000,
        until: int | None = None,
    ) -> Snapshot[S]:  # fmt: skip
        """Fold the log (from ``after``, default the start) up to ``until`` (default: the end)."""
        state = after.state if after is not None else self.initial()
        position = after.position if after is not None else 0
        skipped = after.skipped if after is not None else 0
        while True:
            page = await store.read_page(after=position, limit=batch_size, until=until)
            state = self.fold(state, page.records)
            skipped += _warn_undecodable(page)
            position = page.last_position
            if page.rows < batch_size:
                break
        return Snapshot(state, position, skipped)

    async def as_of(
        self, store: EventStore, *, position: int | None = None, time: datetime | None = None,
        batch_size: int = 1000,
    ) -> S:  # fmt: skip
        """The state after exactly the events at or before ``position`` or ``time``.

        ``time`` selects by each event's ``occurred_at`` (what had happened by then), not by
        position: an event stamped late but committed early is left out, and vice versa.
        """
        if (position is None) == (time is None):
            raise ValueError("as_of needs exactly one of position= or time=")
        state = self.initial()
        cursor = 0
        types = sorted(self.types) if self.types is not None else None
        while True:
            page = await store.read_page(
                after=cursor, limit=batch_size, until=position, before_time=time, types=types
            )
            state = self.fold(state, page.records)
            _warn_undecodable(page)
            if page.rows < batch_size:
                return state
            cursor = page.last_position


class LiveProjection(Generic[S]):
    """A projection kept current by tailing the store in a background task.

    ``async with LiveProjection(p, store) as live: await live.wait_for(rec.position, 5.0)``.
    """

    def __init__(
        self, projection: Projection[S], store: EventStore, *, batch_size: int = 1000,
        poll_interval: float = 1.0,
    ) -> None:  # fmt: skip
        self.projection = projection
        self.store = store
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self._snapshot = Snapshot(projection.initial(), 0)
        self._advanced = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def state(self) -> S:
        return self._snapshot.state

    @property
    def position(self) -> int:
        return self._snapshot.position

    @property
    def failure(self) -> BaseException | None:
        """Why following stopped (a bug in ``apply``), or None while it is healthy."""
        return self._failure

    @property
    def skipped(self) -> int:
        """Undecodable rows passed over since the start (rebuild and follow)."""
        return self._snapshot.skipped

    async def start(self) -> None:
        """Catch up with the log, then follow it in the background."""
        self._set(await self.projection.rebuild(self.store, batch_size=self.batch_size))
        self._stop.clear()
        self._task = asyncio.create_task(self._follow(), name="live-projection")

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=5.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def __aenter__(self) -> LiveProjection[S]:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_for(self, position: int, timeout: float) -> S:  # noqa: ASYNC109 (a deadline, not a cancel scope)
        """The state once it includes ``position``; ProjectionBehind if not within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < position:
            if self._failure is not None:
                raise self._failure
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProjectionBehind(position, self.position, timeout)
            advanced = self._advanced
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(advanced.wait(), remaining)
        return self.state

    def _set(self, snapshot: Snapshot[S]) -> None:
        self._snapshot = snapshot
        # Wake every waiter, then give later waiters a fresh event to wait on.
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def _follow(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while not self._stop.is_set():
            try:
                async for page in self.store.tail_pages(
                    after=self.position, batch_size=self.batch_size, poll_interval=self.poll_interval,
                    stop=self._stop,
                ):  # fmt: skip
                    state = self.projection.fold(self.state, page.records)
                    skipped = self._snapshot.skipped + _warn_undecodable(page)
                    self._set(Snapshot(state, page.last_position, skipped))
                    backoff.reset()
            except TRANSIENT_ERRORS as exc:
                delay = backoff.next()
                log.warning("live projection: %r; resuming in %.2fs", exc, delay)
                await sleep_or_stop(self._stop, delay)
            except Exception as exc:
                # Not retryable (a bug in ``apply``): waiters must hear of it.
                self._failure = exc
                self._advanced.set()
                log.exception("live projection stopped at position %d", self.position)
                return
