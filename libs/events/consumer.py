"""A durable JetStream pull consumer that hands each event to a handler, idempotently.

Per message:

- decode it (an undecodable message or unknown type is poison: dead-lettered, termed);
- tracked mode (default): in ONE Postgres transaction insert the tracking row
  ``(consumer, position)`` and run ``handler(rec, tx)``; if the row already existed the message
  was handled before, so it is only acked. The handler's appends and the tracking row commit
  together: a redelivered message has no second effect.
- untracked mode (``track=False``): ``handler(rec)`` for handlers that keep no Postgres state
  (a router's in-memory table); delivery is at least once.
- outcome (see ``outcomes.py``): ack on success; nak with an exponential delay on a transient
  error; term + dead letter (``stratus_dead_letters``, with the reason) on a PermanentError, or on
  an unexpected exception still failing at its ``max_attempts``-th delivery. A poison message
  is settled on its own, so the messages behind it keep flowing.

Long handlers send ``in_progress`` every ``heartbeat`` seconds so JetStream does not redeliver
them after ``ack_wait``. ``run(stop)`` returns once ``stop`` is set and the handlers in flight
have finished and been acked; fetched messages not yet started are nak'ed for prompt redelivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, cast, overload

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy

from .bus import H_EVENT_ID, H_MSG_ID, H_POSITION, BusConfig, decode_message, subject_matches
from .envelope import RecordedEvent
from .errors import PermanentError
from .lifecycle import Backoff, backoff_delay, sleep_or_stop
from .outcomes import TRANSIENT_ERRORS, classify
from .store import EventStore, Transaction
from .tracking import init_floor

log = logging.getLogger(__name__)

Handler = Callable[[RecordedEvent, Transaction], Awaitable[None]]
MemoryHandler = Callable[[RecordedEvent], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    filter_subjects: tuple[str, ...] = ()  # empty: every event in the stream
    ack_wait: float = 30.0  # seconds before JetStream redelivers an unacked message
    heartbeat: float | None = None  # in_progress interval; default ack_wait / 3
    max_attempts: int = 5  # deliveries of an unexpected failure before it is dead-lettered
    concurrency: int = 1  # messages handled at once
    fetch_batch: int = 16  # messages fetched per pull (at least ``concurrency``)
    fetch_timeout: float = 1.0  # also bounds how long a stop request waits for an idle fetch
    backoff_initial: float = 0.5  # nak delay after the first failed delivery, doubling after
    backoff_max: float = 30.0
    max_ack_pending: int = 1000
    # A consumer that does not exist yet is created to deliver from here (JetStream's start
    # time, i.e. messages published since), not from the start of the stream; a tracked one
    # gets its tracking floor at ``start_position`` (see tracking.py). None: from the start.
    start_time: datetime | None = None
    start_position: int = 0
    # JetStream deletes the consumer after this many seconds without a subscriber. None: never.
    inactive_threshold: float | None = None


@dataclass(slots=True)
class ConsumerStats:
    handled: int = 0
    skipped: int = 0  # already tracked: acked without running the handler
    retried: int = 0  # nak'ed for redelivery
    dead_lettered: int = 0
    reasons: list[str] = field(default_factory=list)  # of dead letters, newest last


class Consumer:
    """Runs ``handler`` for each event of a durable consumer ``name`` on ``bus``'s stream."""

    @overload
    def __init__(
        self, nc: NATS, *, name: str, handler: Handler, store: EventStore,
        track: Literal[True] = True, bus: BusConfig | None = None, options: ConsumerOptions | None = None,
    ) -> None: ...  # fmt: skip

    @overload
    def __init__(
        self, nc: NATS, *, name: str, handler: MemoryHandler, track: Literal[False],
        store: EventStore | None = None, bus: BusConfig | None = None, options: ConsumerOptions | None = None,
    ) -> None: ...  # fmt: skip

    def __init__(
        self, nc: NATS, *, name: str, handler: Handler | MemoryHandler,
        store: EventStore | None = None, track: bool = True, bus: BusConfig | None = None,
        options: ConsumerOptions | None = None,
    ) -> None:  # fmt: skip
        if track and store is None:
            raise ValueError("a tracked consumer needs a store (its tracking rows live there)")
        self.nc = nc
        self.js = nc.jetstream()
        self.name = name
        self.store = store
        self.track = track
        self._handler = handler
        self.bus = bus or BusConfig()
        self.options = options or ConsumerOptions()
        self.stats = ConsumerStats()
        self._sub: JetStreamContext.PullSubscription | None = None
        self._local_filters: tuple[str, ...] = ()
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ setup

    def consumer_config(
        self, filter_subjects: tuple[str, ...], existing: ConsumerInfo | None = None
    ) -> ConsumerConfig:
        """The config to create (``existing`` None) or update the consumer with. An update keeps
        the existing deliver policy and start (JetStream refuses to change them)."""
        subjects = list(filter_subjects)
        opts = self.options
        if existing is not None:
            deliver, start = existing.config.deliver_policy, existing.config.opt_start_time
        elif opts.start_time is not None:
            deliver, start = DeliverPolicy.BY_START_TIME, opts.start_time
        else:
            deliver, start = DeliverPolicy.ALL, None
        return ConsumerConfig(
            durable_name=self.name, name=self.name, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=deliver, opt_start_time=start, ack_wait=opts.ack_wait,
            # Unlimited: this class decides when a message is given up (term + dead letter).
            max_deliver=-1, max_ack_pending=opts.max_ack_pending,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
            filter_subjects=subjects if len(subjects) > 1 else None,
            inactive_threshold=opts.inactive_threshold,
        )  # fmt: skip

    async def subscribe(self) -> None:
        """Create (or update) the durable consumer and bind to it."""
        await self.unsubscribe()
        filters = self.options.filter_subjects
        version = self.nc.connected_server_version
        # nats-server < 2.10 has one filter subject per consumer: take the whole stream and drop
        # what does not match here (acked, never handled).
        old_server = (version.major, version.minor) < (2, 10)
        self._local_filters = filters if len(filters) > 1 and old_server else ()
        try:
            existing: ConsumerInfo | None = await self.js.consumer_info(self.bus.stream, self.name)
        except nats.js.errors.NotFoundError:
            existing = None
        if existing is None and self.track and self.store is not None:
            # Created to start at the projection's position: what came before counts as handled.
            await init_floor(self.store.pool, self.name, self.options.start_position)
        await self.js.add_consumer(
            self.bus.stream, self.consumer_config(() if self._local_filters else filters, existing)
        )
        self._sub = await self.js.pull_subscribe_bind(durable=self.name, stream=self.bus.stream)

    async def unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:
                log.debug("consumer %s: unsubscribe: %r", self.name, exc)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; handlers in flight finish and are acked first."""
        opts = self.options
        gate = asyncio.Semaphore(max(opts.concurrency, 1))
        window = max(opts.fetch_batch, opts.concurrency, 1)
        inflight: set[asyncio.Task[None]] = set()
        backoff = Backoff(0.1, 5.0)
        self._stop = stop
        try:
            while not stop.is_set():
                room = window - len(inflight)
                if room <= 0:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    if self._sub is None:
                        await self.subscribe()
                    assert self._sub is not None
                    msgs = await self._sub.fetch(batch=room, timeout=opts.fetch_timeout)
                except TimeoutError:
                    continue  # nothing to do (or a reconnect ate the pull request)
                except TRANSIENT_ERRORS as exc:
                    delay = backoff.next()
                    log.warning("consumer %s: fetch failed: %r; retrying in %.2fs", self.name, exc, delay)
                    await self.unsubscribe()  # re-create: the consumer may have been lost
                    await sleep_or_stop(stop, delay)
                    continue
                backoff.reset()
                for msg in msgs:
                    task = asyncio.create_task(self._gated(gate, msg))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                    task.add_done_callback(self._crashed)
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            try:
                await self.nc.flush(timeout=5)  # the last acks must reach the server
            except (nats.errors.Error, OSError) as exc:
                log.warning("consumer %s: final flush failed: %r", self.name, exc)
            await self.unsubscribe()

    def _crashed(self, task: asyncio.Task[None]) -> None:
        # handle_message settles every outcome itself; this only reports a bug in it.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("consumer %s: message task crashed", self.name, exc_info=exc)

    async def _gated(self, gate: asyncio.Semaphore, msg: Msg) -> None:
        async with gate:
            if self._stop.is_set():
                await self._settle(msg.nak())  # not started: let another instance have it now
                return
            await self.handle_message(msg)

    async def handle_message(self, msg: Msg) -> None:
        """Handle one delivered message and settle it (ack, nak, or term)."""
        deliveries = msg.metadata.num_delivered or 1
        if self._local_filters and not any(subject_matches(f, msg.subject) for f in self._local_filters):
            await self._settle(msg.ack())
            return
        try:
            rec = decode_message(msg)
        except PermanentError as exc:
            await self._dead_letter(msg, f"{type(exc).__name__}: {exc}", deliveries)
            return
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        failure: Exception | None = None
        handled = False
        try:
            handled = await self._apply(rec)
        except Exception as exc:  # classified by _failed: retried or dead-lettered, never dropped
            failure = exc
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        if failure is not None:
            await self._failed(msg, rec, failure, deliveries)
            return
        if handled:
            self.stats.handled += 1
        else:
            self.stats.skipped += 1
        await self._settle(msg.ack())

    async def _apply(self, rec: RecordedEvent) -> bool:
        """Run the handler; False if the event was already handled (tracked mode)."""
        if not self.track:
            await cast(MemoryHandler, self._handler)(rec)
            return True
        assert self.store is not None
        async with self.store.transaction() as tx:
            if not await tx.track(self.name, rec.position):
                return False
            await cast(Handler, self._handler)(rec, tx)
        return True

    async def _failed(self, msg: Msg, rec: RecordedEvent, exc: Exception, deliveries: int) -> None:
        kind = classify(exc)
        if kind == "permanent":
            await self._dead_letter(msg, f"{type(exc).__name__}: {exc}", deliveries, rec)
        elif kind == "unexpected" and deliveries >= self.options.max_attempts:
            reason = f"{type(exc).__name__}: {exc} (still failing after {deliveries} deliveries)"
            await self._dead_letter(msg, reason, deliveries, rec)
        else:
            if kind == "unexpected":
                log.exception("consumer %s: position %d failed", self.name, rec.position, exc_info=exc)
            else:
                log.info("consumer %s: position %d: %r; will retry", self.name, rec.position, exc)
            await self._retry(msg, deliveries)

    async def _retry(self, msg: Msg, deliveries: int) -> None:
        self.stats.retried += 1
        delay = backoff_delay(
            deliveries, initial=self.options.backoff_initial, maximum=self.options.backoff_max
        )
        await self._settle(msg.nak(delay=delay))

    async def _dead_letter(
        self, msg: Msg, reason: str, deliveries: int, rec: RecordedEvent | None = None
    ) -> None:
        headers = msg.headers or {}
        position = rec.position if rec is not None else _int_or_none(headers.get(H_POSITION))
        event_id = str(rec.event_id) if rec is not None else headers.get(H_EVENT_ID) or headers.get(H_MSG_ID)
        if self.store is not None:
            try:
                async with self.store.transaction() as tx:
                    await tx.record_dead_letter(
                        self.name, reason=reason, position=position, event_id=event_id,
                        subject=msg.subject, payload=msg.data, deliveries=deliveries,
                    )  # fmt: skip
            except TRANSIENT_ERRORS as exc:
                # Cannot record it now: keep the message rather than lose the record.
                log.warning("consumer %s: cannot record dead letter: %r; will retry", self.name, exc)
                await self._retry(msg, deliveries)
                return
        log.error(
            "consumer %s: dead letter (position %s, subject %s): %s", self.name, position, msg.subject, reason
        )
        self.stats.dead_lettered += 1
        self.stats.reasons.append(reason)
        await self._settle(msg.term())

    async def _heartbeat(self, msg: Msg) -> None:
        interval = self.options.heartbeat or self.options.ack_wait / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await msg.in_progress()
            except (nats.errors.Error, OSError) as exc:
                log.warning("consumer %s: in_progress failed: %r", self.name, exc)

    async def _settle(self, op: Awaitable[None]) -> None:
        # A lost ack/nak/term only means a redelivery, which tracking makes harmless.
        try:
            await op
        except (nats.errors.Error, OSError) as exc:
            log.warning("consumer %s: could not settle a message: %r", self.name, exc)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
