"""What every Stratus service process stands on: the store, the bus, the fleet projection.

A service's ``main.py`` builds a ``ServiceHost``, registers consumers and loops, and runs it.
Consumers are woken by bus messages that only name a service (level-triggered): the handler
waits until the live projection has folded the message's position, then reconciles that
service from the whole projected state. One reconcile per service at a time (``locks``);
different services in parallel. A periodic resync catches anything missed.

Start-up is in constant time: the fleet projection starts from its last snapshot (written every
``STRATUS_SNAPSHOT_INTERVAL`` and on shutdown) and replays only the tail, without telemetry. A
consumer that does not exist yet starts at this start-up (JetStream start time) rather than at
the start of the stream, and expires after ``STRATUS_CONSUMER_INACTIVE`` unused; tracking rows
are pruned below each consumer's floor (``libs/events/tracking.py``).

Failures are loud: a known event the projection cannot decode or fold stops the process (exit
status 3) with a critical log line naming the position, the stream and why. Until it has stopped,
``GET /healthz`` on the process's metrics server answers 503 saying so, as it does while the store
or the bus is away (``libs/telemetry/health.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from libs.events.bus import BusConfig, connect_until_stopped, ensure_stream
from libs.events.consumer import Consumer, ConsumerOptions, Handler, MemoryHandler
from libs.events.errors import ProjectionFailed
from libs.events.leases import Lease, instance_id
from libs.events.lifecycle import Backoff, install_stop_signals, retry_connect, sleep_or_stop
from libs.events.outcomes import TRANSIENT_ERRORS
from libs.events.projection import LiveProjection
from libs.events.redelivery import Redeliverer
from libs.events.store import EventStore, Transaction
from libs.events.tracking import prune
from libs.fleet.projection import FLEET
from libs.fleet.state import FleetState
from libs.telemetry.handlers import instrument_handler, instrument_memory_handler
from libs.telemetry.process import ConsumerGauges, start_process_metrics
from libs.telemetry.tracing import setup_tracing

from .latest_causes import LatestCauses
from .settings import Settings

log = logging.getLogger(__name__)

# A new consumer delivers messages published since (start-up - this): covers the clock skew
# between this host and the NATS server (the overlap is de-duplicated by tracking).
START_MARGIN = timedelta(seconds=60)
EXIT_PROJECTION_FAILED = 3
# Advisory lock namespace of ``ServiceHost.exclusive`` (namespaced like libs.events.schema's).
EXCLUSIVE_LOCK = 0x5354_0030


class KeyedLocks:
    """One asyncio.Lock per key, created on demand."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


def bus_config(settings: Settings) -> BusConfig:
    prefix = settings.bus_prefix
    stream = "STRATUS" if prefix == "stratus" else f"STRATUS_{prefix.upper().replace('-', '_')}"
    return BusConfig(
        stream=stream, prefix=prefix, max_age=settings.bus_max_age, max_bytes=settings.bus_max_bytes
    )


class ServiceHost:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.bus = bus_config(settings)
        self.stop = asyncio.Event()
        self.locks = KeyedLocks()
        self._store: EventStore | None = None
        self._nc: NATS | None = None
        self._fleet: LiveProjection[FleetState] | None = None
        self.latest_causes = LatestCauses()  # for reconciles woken without a message
        self._tasks: list[Callable[[], Awaitable[None]]] = []
        self._tracked: dict[str, list[str]] = {}  # tracked consumer -> its event types
        self._gauges: list[ConsumerGauges] = []  # each durable consumer's sampled lag (/healthz)
        self._start_time: datetime | None = None
        self._start_position = 0
        self.exit_code = 0

    # ------------------------------------------------------------------ connections

    @property
    def store(self) -> EventStore:
        assert self._store is not None, "ServiceHost not started"
        return self._store

    @property
    def js(self) -> JetStreamContext:
        assert self._nc is not None, "ServiceHost not started"
        return self._nc.jetstream()

    @property
    def nc(self) -> NATS:
        assert self._nc is not None, "ServiceHost not started"
        return self._nc

    @property
    def fleet(self) -> LiveProjection[FleetState]:
        assert self._fleet is not None, "ServiceHost not started"
        return self._fleet

    # ------------------------------------------------------------------ registration

    def consumer(
        self, types: Sequence[str], handler: Handler, *, name: str | None = None,
        options: ConsumerOptions | None = None,
    ) -> None:  # fmt: skip
        """A tracked, durable consumer shared by every instance of this service (queue semantics)."""
        opts = self._options(types, options)
        cname = name or self.name
        handler = instrument_handler(self.name, cname, handler)  # causation, metrics, spans
        retries = Redeliverer(lambda: self.store, cname, handler)  # `stratus dead-letters retry`
        self.loop(1.0, retries.poll, name=f"{cname}: dead-letter retries")
        gauges = ConsumerGauges(lambda: self.js, lambda: self.store, self.bus.stream, cname)
        self._gauges.append(gauges)
        self.loop(5.0, gauges.sample, name=f"{cname}: metrics")
        self._add_consumer(
            cname,
            lambda: Consumer(
                self.nc, name=cname, handler=handler, store=self.store, bus=self.bus, options=opts
            ),
        )

    def memory_consumer(
        self,
        types: Sequence[str],
        handler: MemoryHandler,
        *,
        name: str,
        options: ConsumerOptions | None = None,
    ) -> None:
        """An untracked consumer of this instance's own (every instance sees every event)."""
        opts = self._options(types, options)
        handler = instrument_memory_handler(self.name, name, handler)  # causation, metrics, spans
        self._add_consumer(
            name,
            lambda: Consumer(self.nc, name=name, handler=handler, track=False, bus=self.bus, options=opts),
        )

    def _options(self, types: Sequence[str], options: ConsumerOptions | None) -> ConsumerOptions:
        filters = tuple(self.bus.filters_for_types(types))
        return dataclasses.replace(
            options or ConsumerOptions(), filter_subjects=filters,
            inactive_threshold=self.settings.consumer_inactive,
        )  # fmt: skip

    def _started_options(self, opts: ConsumerOptions) -> ConsumerOptions:
        """Where a consumer created now starts: this process's start-up (see the docstring)."""
        assert self._start_time is not None
        return dataclasses.replace(
            opts, start_time=self._start_time - START_MARGIN, start_position=self._start_position
        )

    def _add_consumer(self, name: str, make: Callable[[], Consumer]) -> None:
        async def run() -> None:
            consumer = make()
            consumer.options = self._started_options(consumer.options)
            backoff = Backoff(0.5, 10.0)
            while not self.stop.is_set():
                try:
                    await consumer.subscribe()
                    await consumer.run(self.stop)
                    return
                except TRANSIENT_ERRORS as exc:
                    log.warning("%s: consumer %s: %r; retrying", self.name, name, exc)
                    await sleep_or_stop(self.stop, backoff.next())

        self._tasks.append(run)

    async def prune_tracking(self) -> None:
        """Raise each tracked consumer's floor and delete its tracking rows below it."""
        for cname, types in self._tracked.items():
            new_floor, deleted = await prune(self.store.pool, cname, types)
            if deleted:
                log.debug("%s: %s: %d tracking rows pruned (floor %d)", self.name, cname, deleted, new_floor)

    def loop(self, interval: float, body: Callable[[], Awaitable[None]], *, name: str) -> None:
        """Run ``body`` every ``interval`` seconds until stop. A round failing with a transient
        error is logged and retried; anything else is a bug and ends the process (the
        supervisor restarts it)."""

        async def run() -> None:
            while not self.stop.is_set():
                try:
                    await body()
                except asyncio.CancelledError:
                    raise
                except TRANSIENT_ERRORS as exc:
                    log.warning("%s: %s: %r", self.name, name, exc)
                await sleep_or_stop(self.stop, interval)

        self._tasks.append(run)

    def task(self, body: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(body)

    def leader(self, name: str | None = None) -> Lease:
        """A lease this process keeps trying to hold (one leader among the service's instances):
        check ``lease.leading`` before acting. Taken over within STRATUS_LEASE_TTL of a leader's
        crash, partition or pause; released on stop."""
        lease = _DeferredLease(self, name or self.name, instance_id(self.name))
        self._tasks.append(lambda: lease.run(self.stop))
        return lease

    @asynccontextmanager
    async def exclusive(self, key: str, *, wait: float = 10.0) -> AsyncIterator[Transaction]:
        """A transaction holding ``key``'s lock across every instance of every service (a
        transaction-scoped advisory lock), entered once the fleet projection includes every event
        committed before the lock was taken: a decision made inside sees what any other
        instance decided before, and its appends commit before the next one's look."""
        async with self.store.transaction() as tx:
            await tx.conn.execute("SELECT pg_advisory_xact_lock($1::int, hashtext($2))", EXCLUSIVE_LOCK, key)
            head = await tx.conn.fetchval("SELECT coalesce(max(position), 0) FROM stratus_events")
            await self.fleet.wait_for(int(head), wait)
            yield tx

    def instance_lease(self) -> Lease:
        """A lease of this instance's own, named by its holder: others see it alive while it
        is held (``libs.events.leases.live_holder``), e.g. to tell a live claim (claims.py)."""
        holder = instance_id(self.name)
        lease = _DeferredLease(self, holder, holder)
        self._tasks.append(lambda: lease.run(self.stop))
        return lease

    # ------------------------------------------------------------------ running

    async def run(self, on_started: Callable[[], Awaitable[None]] | None = None) -> None:
        remove = install_stop_signals(self.stop)
        try:
            async with AsyncExitStack() as stack:
                self._store = await retry_connect(
                    lambda: EventStore.connect(self.settings.database_url, min_size=1, max_size=5),
                    what=self.name, stop=self.stop,
                )  # fmt: skip
                if self._store is None:
                    return
                stack.push_async_callback(self._store.close)
                self._nc = await connect_until_stopped(
                    self.settings.nats_url, f"stratus-{self.name}", self.stop
                )
                if self._nc is None:
                    return
                stack.push_async_callback(self._nc.close)
                await ensure_stream(self.js, self.bus)
                self._start_time = datetime.now(UTC)
                self._start_position = await self._store.last_position()
                self._fleet = LiveProjection(
                    FLEET, self._store, poll_interval=1.0, snapshot_interval=self.settings.snapshot_interval,
                    observe=self.latest_causes.observe,
                )  # fmt: skip
                began = asyncio.get_running_loop().time()
                try:
                    await self._fleet.start()
                except ProjectionFailed as exc:
                    self._failed(exc)
                    return
                stack.push_async_callback(self._fleet.stop)
                stack.callback(start_process_metrics(
                    self.name, self.settings.home, self._fleet, bus=lambda: self._nc,
                    consumers=self._gauges, stopping=self.stop.is_set,
                ))  # fmt: skip
                if on_started is not None:
                    await on_started()
                log.info(
                    "%s: started at position %d (%d positions replayed past the snapshot;"
                    " projection ready in %.3fs)",
                    self.name, self._fleet.position, self._fleet.replayed,
                    asyncio.get_running_loop().time() - began,
                )  # fmt: skip
                if self._fleet.skipped:
                    log.warning(
                        "%s: %d events in the log are of types this version cannot read; skipped",
                        self.name, self._fleet.skipped,
                    )  # fmt: skip
                if self._tracked:
                    self.loop(self.settings.tracking_prune_interval, self.prune_tracking, name="prune")
                self._tasks.append(self._watch_projection)
                await asyncio.gather(*(t() for t in self._tasks))
        finally:
            remove()

    async def _watch_projection(self) -> None:
        """Stop the process if the fleet projection stops (it cannot fold an event)."""
        stopped = asyncio.ensure_future(self.stop.wait())
        failed = asyncio.ensure_future(self.fleet.wait_failed())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        for f in (stopped, failed):
            f.cancel()
        if failed.done() and not failed.cancelled():
            self._failed(failed.result())

    def _failed(self, exc: BaseException) -> None:
        log.critical("%s: stopping: %s", self.name, exc)
        self.exit_code = EXIT_PROJECTION_FAILED
        self.stop.set()


class _DeferredLease(Lease):
    """A Lease built before the store is connected: its pool is the host's once it runs."""

    def __init__(self, host: ServiceHost, name: str, holder: str) -> None:
        self._host = host
        super().__init__(None, name, holder, ttl=host.settings.lease_ttl, renew=host.settings.lease_renew)

    async def run(self, stop: asyncio.Event) -> None:
        self.pool = self._host.store.pool
        await super().run(stop)


def configure_logging(component: str, level: str) -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s")


def run_main(
    name: str,
    build: Callable[[ServiceHost], Callable[[], Awaitable[None]] | None],
    *,
    fast_loop: bool = False,
) -> None:
    """Entry point of a service process: settings from env, build, run until SIGTERM.

    ``fast_loop`` runs on uvloop (the router's data path). Others keep asyncio's loop: its
    subprocess handling is what the local provider's launcher was built and tested against.
    """
    settings = Settings.from_env()
    configure_logging(name, settings.log_level)
    setup_tracing(name, settings)  # OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; off otherwise

    async def main() -> int:
        host = ServiceHost(name, settings)
        on_started = build(host)
        await host.run(on_started)
        return host.exit_code

    if fast_loop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            pass
        else:
            sys.exit(uvloop.run(main()))
    sys.exit(asyncio.run(main()))
