"""Projections: state folded from the log, rebuildable at any time and as of any past moment.

A ``Projection[S]`` is plain data: a factory for the empty state and a pure
``apply(state, rec) -> state``. ``rebuild`` folds the whole log in batches; ``as_of`` folds only
what had happened at a position or a time (audits). ``LiveProjection`` keeps the state current
by tailing the store and lets a bus handler ``wait_for`` the position of the message it holds,
so it never decides on a projection older than the event it is reacting to.

Rows this code cannot decode:

- a tag no registered type has (a newer version added a type: a rolling upgrade) is passed over
  with a warning and counted in ``Snapshot.skipped`` (forward compatible: the type means nothing
  to this code), so it neither crash-loops a service at start-up nor stops its live projection;
- a known tag whose payload no type or upcaster reads (a newer schema, or a bug), or an event
  that ``apply`` raises on, cannot be passed over without building a wrong state: it raises
  ``ProjectionFailed`` naming the position, the stream and why. At start-up that ends the
  process; while following, ``failure`` holds it and ``wait_failed`` returns it, and the
  service host stops the process with that log line (``/healthz`` says so too).

Start-up in constant time: a projection with ``snapshots`` loads its last snapshot (state and
position, ``snapshots.py``), replays the tail, and ``LiveProjection`` writes a new one every
``snapshot_interval`` seconds when it has moved, and on stop. A projection with ``types`` has
the other registered types left out in SQL (``read_page(exclude=...)``): telemetry such as
``QpsSampled`` stays in the log for audits but is never sent to, or decoded by, a projection
that does not fold it.
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
from .errors import EventDecodeError, ProjectionBehind, ProjectionFailed, TransientError
from .lifecycle import Backoff, sleep_or_stop
from .outcomes import TRANSIENT_ERRORS
from .snapshots import SnapshotCodec, load_snapshot, save_snapshot
from .store import EventStore, Page
from .types import EVENT_TYPES_BY_TAG

log = logging.getLogger(__name__)

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[S]):
    state: S
    position: int  # every event up to here has been folded in (0: none)
    skipped: int = 0  # undecodable rows passed over on the way (see the module docstring)


def _warn_undecodable(page: Page) -> int:
    """Skip rows of unknown types (warned, counted); raise on a known type that cannot be read."""
    for bad in page.undecodable:
        if isinstance(bad.error, EventDecodeError):
            raise ProjectionFailed(bad.position, bad.stream_id, bad.event_type, bad.error.reason)
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
    # Optional: how the state is snapshotted (start-up from the last snapshot, not position 0).
    snapshots: SnapshotCodec[S] | None = None

    @property
    def excluded(self) -> list[str] | None:
        """Registered tags this projection does not read: left out in SQL. (Unknown tags are
        still read, so that they are counted as skipped.)"""
        if self.types is None:
            return None
        return sorted(set(EVENT_TYPES_BY_TAG) - self.types)

    def fold(self, state: S, records: Iterable[RecordedEvent]) -> S:
        wanted = [r for r in records if self.types is None or r.event_type in self.types]
        if not wanted:
            return state
        try:
            if self.fold_batch is not None:
                return self.fold_batch(state, wanted)
            for rec in wanted:
                state = self.apply(state, rec)
            return state
        except Exception as exc:
            first, last = wanted[0], wanted[-1]
            where = f"{first.position}..{last.position}" if len(wanted) > 1 else str(first.position)
            raise ProjectionFailed(
                last.position, first.stream_id if len(wanted) == 1 else "(a batch)",
                first.event_type if len(wanted) == 1 else "(a batch)",
                f"apply raised {exc!r} on positions {where}",
            ) from exc  # fmt: skip

    async def load(self, store: EventStore) -> Snapshot[S] | None:
        """The last stored snapshot for this code, or None (none, or one that does not decode)."""
        codec = self.snapshots
        if codec is None:
            return None
        stored = await load_snapshot(store.pool, codec.name, codec.fingerprint)
        if stored is None:
            return None
        try:
            state = codec.decode(stored.state)
        except Exception as exc:  # a corrupt row must not stop start-up: rebuild instead
            log.warning("projection %s: snapshot at %d unreadable (%r); rebuilding", codec.name,
                        stored.position, exc)  # fmt: skip
            return None
        return Snapshot(state, stored.position, stored.skipped)

    async def save(self, store: EventStore, snapshot: Snapshot[S]) -> bool:
        codec = self.snapshots
        if codec is None or snapshot.position == 0:
            return False
        data = codec.encode(snapshot.state)
        return await save_snapshot(
            store.pool, codec.name, codec.fingerprint, snapshot.position, snapshot.skipped, data
        )

    async def start(self, store: EventStore, *, batch_size: int = 1000) -> tuple[Snapshot[S], int]:
        """The state now: the last snapshot (if any) plus the tail. Also returns the number of
        log positions replayed past the snapshot."""
        loaded = await self.load(store)
        snap = await self.rebuild(store, after=loaded, batch_size=batch_size)
        return snap, snap.position - (loaded.position if loaded is not None else 0)

    async def rebuild(
        self, store: EventStore, *, after: Snapshot[S] | None = None, batch_size: int = 1000,
        until: int | None = None,
    ) -> Snapshot[S]:  # fmt: skip
        """Fold the log (from ``after``, default the start) up to ``until`` (default: the end)."""
        state = after.state if after is not None else self.initial()
        position = after.position if after is not None else 0
        skipped = after.skipped if after is not None else 0
        excluded = self.excluded
        while True:
            page = await store.read_page(after=position, limit=batch_size, until=until, exclude=excluded)
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
    With ``snapshot_interval`` (and a projection with ``snapshots``), a snapshot is written
    that often while the position moves, and on ``stop``.
    """

    def __init__(
        self, projection: Projection[S], store: EventStore, *, batch_size: int = 1000,
        poll_interval: float = 1.0, snapshot_interval: float | None = None,
        observe: Callable[[Sequence[RecordedEvent]], None] | None = None,
    ) -> None:  # fmt: skip
        self.projection = projection
        self.observe = observe  # sees each page followed, just before its state is published
        self.store = store
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.snapshot_interval = snapshot_interval
        self.replayed = 0  # log positions folded at start past the snapshot (or from 0)
        self._snapshot = Snapshot(projection.initial(), 0)
        self._saved_position = 0
        self._saved_at = 0.0
        self._advanced = asyncio.Event()
        self._failed = asyncio.Event()
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
        """Why following stopped (``ProjectionFailed``), or None while it is healthy."""
        return self._failure

    @property
    def skipped(self) -> int:
        """Undecodable rows passed over since the start (rebuild and follow)."""
        return self._snapshot.skipped

    async def wait_failed(self) -> BaseException:
        """Return once following has stopped for good (the failure)."""
        await self._failed.wait()
        assert self._failure is not None
        return self._failure

    async def lag(self) -> int:
        """Positions in the log not folded yet (0 when current)."""
        return max(0, await self.store.last_position() - self.position)

    async def start(self) -> None:
        """Load the last snapshot, catch up with the log, then follow it in the background."""
        snap, self.replayed = await self.projection.start(self.store, batch_size=self.batch_size)
        self._set(snap)
        loop = asyncio.get_running_loop()
        self._saved_at = loop.time()
        if self.projection.snapshots is not None and self.replayed > 10 * self.batch_size:
            with contextlib.suppress(TransientError):
                await self._save()  # a long replay: the next start should not repeat it
        elif self.replayed == 0:
            self._saved_position = self.position  # the stored snapshot is this state
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
        if self._failure is None:
            with contextlib.suppress(TransientError):
                await self._save()

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

    async def _save(self) -> None:
        snap = self._snapshot
        if self.projection.snapshots is None or snap.position <= self._saved_position:
            return
        await self.projection.save(self.store, snap)
        self._saved_position = snap.position
        self._saved_at = asyncio.get_running_loop().time()

    async def _maybe_save(self) -> None:
        interval = self.snapshot_interval
        if interval is None or asyncio.get_running_loop().time() - self._saved_at < interval:
            return
        try:
            await self._save()
        except TransientError as exc:
            log.warning("live projection: snapshot not written: %s", exc)

    async def _follow(self) -> None:
        backoff = Backoff(0.1, 5.0)
        interrupted = False
        excluded = self.projection.excluded
        while not self._stop.is_set():
            try:
                async for page in self.store.tail_pages(
                    after=self.position, batch_size=self.batch_size, poll_interval=self.poll_interval,
                    stop=self._stop, exclude=excluded,
                ):  # fmt: skip
                    state = self.projection.fold(self.state, page.records)
                    skipped = self._snapshot.skipped + _warn_undecodable(page)
                    if self.observe is not None:
                        self.observe(page.records)
                    self._set(Snapshot(state, page.last_position, skipped))
                    if interrupted:
                        log.info("live projection: following the log again at %d", self.position)
                        interrupted = False
                    backoff.reset()
                    await self._maybe_save()
            except TRANSIENT_ERRORS as exc:
                delay = backoff.next()
                interrupted = True
                log.warning("live projection: %r; resuming in %.2fs", exc, delay)
                await sleep_or_stop(self._stop, delay)
            except Exception as exc:
                # ProjectionFailed, or a bug: folding on would build a wrong state.
                self._failure = exc
                self._advanced.set()
                self._failed.set()
                log.critical("live projection stopped at position %d: %s", self.position, exc,
                             exc_info=not isinstance(exc, ProjectionFailed))  # fmt: skip
                return


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/healthz`` says of a live projection."""

    healthy: bool
    position: int
    lag: int  # log positions not folded yet
    skipped: int  # rows of unknown types passed over
    failure: str  # why it stopped ("" while healthy)


async def projection_health(live: object) -> Health:
    """The health of a ``LiveProjection`` (or anything with ``position``; the rest defaults)."""
    position = int(getattr(live, "position", 0))
    failure = getattr(live, "failure", None)
    lag_of = getattr(live, "lag", None)
    lag = 0
    if callable(lag_of):
        try:
            lag = int(await lag_of())
        except TRANSIENT_ERRORS:
            lag = -1  # the store cannot say now
    return Health(
        healthy=failure is None, position=position, lag=lag,
        skipped=int(getattr(live, "skipped", 0)), failure=str(failure) if failure is not None else "",
    )  # fmt: skip
