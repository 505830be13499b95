"""The outbox relay: publishes the Postgres log to JetStream, in position order, exactly once in effect.

- Woken by LISTEN/NOTIFY on the append channel; a slow poll only covers a lost notification.
- Publishes pipelined batches (``batch_size`` publishes in flight, then awaits their acks) with
  ``Nats-Msg-Id`` = event id, so a batch retried after a crash or an outage is dropped by
  JetStream as duplicates inside its duplicate window.
- Its offset (the last position JetStream acked, and every position before it) lives in
  ``stratus_relay_offsets``; it never moves past a publish that was not acked, so a restart
  resumes with nothing lost.
- One active relay per name: a lease (``leases.py``: a Postgres row renewed every
  ``lease_renew`` seconds, expiring ``lease_ttl`` seconds after the last renewal). A second
  instance waits as a hot standby and takes over within the ttl of the leader's crash, kill -9,
  partition or SIGSTOP; a deposed leader stops publishing before its lease expires (its own
  clock), and a late offset write cannot move the offset back (``GREATEST``).
- ``republish(from_position)`` publishes again what JetStream lost (Postgres is the truth).
  The leader does it by itself when it finds the stream gone (a NATS server's store removed):
  it recreates the stream and republishes every position above the lowest tracking floor of
  the tracked consumers (below it, every consumer has handled everything: tracking.py), up to
  its offset, then carries on. Consumers de-duplicate by position.

Order: JetStream stores a batch in publish order. After a failed batch the relay resends from the
first unacked position; if a later message of that batch had already been stored, it stays
ahead of the resent ones. Consumers are idempotent per position and must not rely on strict order
across an outage (projections use positions, not arrival order).

Run it: ``python -m libs.events relay`` (see ``__main__.py``) or ``await Relay(...).run(stop)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.api import PubAck
from opentelemetry.trace import Span

from libs.telemetry.health import HealthEndpoint
from libs.telemetry.relay_metrics import relay_probe, sample_relay
from libs.telemetry.tracing import end_publish, publish_span, tracing_on

from .bus import BusConfig, OutboxMessage, connect_until_stopped, ensure_stream
from .errors import BusUnavailable, StoreUnavailable
from .leases import Lease, instance_id
from .lifecycle import Backoff, retry_connect, sleep_or_stop, wait_any
from .outcomes import TRANSIENT_ERRORS
from .schema import NOTIFY_CHANNEL
from .store import EventStore

log = logging.getLogger(__name__)

_SELECT_OUTBOX = (
    "SELECT position, event_id, stream_id, version, event_type, schema_version, payload::text,"
    " occurred_at, causation_id, correlation_id, trace::text, coalesce(payload->>'service', '')"
    " FROM stratus_events WHERE position > $1 AND ($2::bigint IS NULL OR position <= $2)"
    " ORDER BY position LIMIT $3"
)


@dataclass(frozen=True, slots=True)
class RelayOptions:
    name: str = "default"
    batch_size: int = 256  # publishes in flight before awaiting their acks
    ack_timeout: float = 5.0  # seconds to wait for a batch's acks
    poll_interval: float = 5.0  # safety net for a lost NOTIFY, not the normal wake-up
    standby_interval: float = 1.0  # how often a standby tries to take over (the lease's renew)
    lease_ttl: float = 5.0  # a leader not renewing for this long is replaced
    backoff_initial: float = 0.1
    backoff_max: float = 5.0


class Relay:
    """Publishes ``store``'s log to the JetStream stream of ``bus``."""

    def __init__(
        self, store: EventStore, nc: NATS, bus: BusConfig | None = None,
        options: RelayOptions | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.js = nc.jetstream()
        self.bus = bus or BusConfig()
        self.options = options or RelayOptions()
        self.published = 0  # messages acked by JetStream in this process (duplicates included)
        self._led_term = -1
        self.lease = Lease(
            store.pool, f"relay:{self.options.name}", instance_id("relay"),
            ttl=self.options.lease_ttl, renew=self.options.standby_interval,
        )  # fmt: skip

    @property
    def is_leader(self) -> bool:
        return self.lease.leading

    # ------------------------------------------------------------------ offsets

    async def offset(self) -> int:
        """The last position this relay has seen acked (0 before its first publish)."""
        v = await self.store.pool.fetchval(
            "SELECT position FROM stratus_relay_offsets WHERE relay = $1", self.options.name
        )
        return int(v or 0)

    async def _save_offset(self, conn: asyncpg.Connection, position: int) -> None:
        # GREATEST: an offset never goes back, even if a deposed leader writes late.
        await conn.execute(
            "INSERT INTO stratus_relay_offsets (relay, position) VALUES ($1, $2)"
            " ON CONFLICT (relay) DO UPDATE SET"
            " position = GREATEST(stratus_relay_offsets.position, EXCLUDED.position), updated_at = now()",
            self.options.name,
            position,
        )

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set: standby until leader, then follow the log."""
        backoff = Backoff(self.options.backoff_initial, self.options.backoff_max)
        leasing = asyncio.create_task(self.lease.run(stop), name="relay-lease")
        try:
            while not stop.is_set():
                try:
                    conn = await self._lead(stop)
                    if conn is None:
                        return
                    try:
                        # Looked at as the leader: what a standby saw before its wait is stale
                        # (at the first start the stream is missing, and nothing is lost).
                        lost_stream = await self._stream_missing()
                        await ensure_stream(self.js, self.bus)
                        if lost_stream:
                            await self._recover_stream()
                        await self._follow(conn, stop, backoff)
                    finally:
                        await _close_quietly(conn)
                except TRANSIENT_ERRORS as exc:
                    delay = backoff.next()
                    log.warning("relay %s: %r; retrying in %.2fs", self.options.name, exc, delay)
                    await sleep_or_stop(stop, delay)
        finally:
            leasing.cancel()
            await asyncio.gather(leasing, return_exceptions=True)
            await self.lease.release()

    async def _lead(self, stop: asyncio.Event) -> asyncpg.Connection | None:
        """Once this relay leads: a connection to LISTEN and write the offset on (None: stopped)."""
        if not await self.lease.wait_leading(stop):
            return None
        if self._led_term != self.lease.term:  # once per term, not on every reconnection
            self._led_term = self.lease.term
            log.info("relay %s: leading (term %d)", self.options.name, self.lease.term)
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self.store.dsn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreUnavailable(f"relay {self.options.name}: cannot connect: {exc!r}") from exc
        return conn

    async def _stream_missing(self) -> bool:
        try:
            await self.js.stream_info(self.bus.stream)
        except nats.js.errors.NotFoundError:
            return True
        except (nats.errors.Error, OSError) as exc:
            raise BusUnavailable(f"cannot read stream {self.bus.stream}: {exc!r}") from exc
        return False

    async def _recover_stream(self) -> None:
        """The stream was gone: publish again what a consumer may not have handled yet."""
        offset = await self.offset()
        if offset == 0:
            return
        floor = await self.store.pool.fetchval(
            "SELECT coalesce(min(position), 0) FROM stratus_tracking_floor"
        )
        start = int(floor or 0) + 1
        log.warning(
            "relay %s: stream %s was lost; republishing positions %d..%d from Postgres",
            self.options.name, self.bus.stream, start, offset,
        )  # fmt: skip
        n = await self.republish(start, offset)
        log.info("relay %s: republished %d events", self.options.name, n)

    async def _follow(self, conn: asyncpg.Connection, stop: asyncio.Event, backoff: Backoff) -> None:
        wake = asyncio.Event()
        lost = asyncio.Event()
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
        conn.add_termination_listener(lambda *_: lost.set())
        offset = await self.offset()
        while not stop.is_set():
            if lost.is_set() or conn.is_closed():
                raise StoreUnavailable(f"relay {self.options.name}: lost its LISTEN connection")
            if not self.lease.leading:
                log.warning("relay %s: lease lost; standing by", self.options.name)
                return
            wake.clear()  # before reading: a NOTIFY during the read wakes the next wait
            rows = await _fetch(conn, offset, None, self.options.batch_size)
            if rows:
                acked = await self._publish(rows, offset)
                if acked > offset:
                    await self._save_offset(conn, acked)
                    offset = acked
                if acked < rows[-1].position:
                    # Keep the lock (a standby would only hit the same outage): back off, resend.
                    delay = backoff.next()
                    log.warning(
                        "relay %s: JetStream acked up to position %d of %d; resending from %d in %.2fs",
                        self.options.name, acked, rows[-1].position, acked + 1, delay,
                    )  # fmt: skip
                    await wait_any(stop, lost, self.lease.lost, seconds=delay)
                    if await self._stream_missing():
                        await ensure_stream(self.js, self.bus)
                        await self._recover_stream()
                    continue
                backoff.reset()
                if len(rows) == self.options.batch_size:
                    continue
            await wait_any(wake, stop, lost, self.lease.lost, seconds=self.options.poll_interval)

    async def _publish(self, rows: Sequence[OutboxMessage], offset: int) -> int:
        """Publish ``rows`` pipelined; returns the last position of the acked prefix.

        Traced (``tracing_on()``): a ``publish`` span per event that carries a trace context, its
        child, from the publish to JetStream's ack. The message carries the event's own context
        (the append's), so a consumer's span is the append's child whether the event came from
        the bus or the log, and a message is the stored event, byte for byte."""
        futures: list[asyncio.Future[PubAck]] = []
        spans: list[Span | None] = []
        traced = tracing_on()
        try:
            for row in rows:
                subject, headers = row.subject(self.bus), row.headers()
                if traced:
                    spans.append(publish_span(row.trace, subject, row.position, row.event_type))
                futures.append(
                    await self.js.publish_async(
                        subject, row.payload, headers=headers,
                        stream=self.bus.stream, wait_stall=self.options.ack_timeout,
                    )
                )  # fmt: skip
        except (nats.errors.Error, OSError) as exc:
            # Publishing stopped midway (connection closed, buffer full): count what went out.
            log.warning(
                "relay %s: publish failed after %d messages: %r", self.options.name, len(futures), exc
            )
        if futures:
            _done, pending = await asyncio.wait(futures, timeout=self.options.ack_timeout)
            for f in pending:
                f.cancel()  # frees its slot in nats-py's pending-publish table
            await asyncio.gather(*pending, return_exceptions=True)
        acked = offset
        prefix_intact = True
        for row, f in zip(rows, futures, strict=False):
            failure = None if f.cancelled() else f.exception()
            if f.cancelled() or failure is not None:
                if prefix_intact and failure is not None:
                    log.warning(
                        "relay %s: position %d not acked: %r", self.options.name, row.position, failure
                    )
                prefix_intact = False
            elif prefix_intact:
                acked = row.position
                self.published += 1
        for i, span in enumerate(spans):  # a publish that raised has no future: not acked
            if span is not None:
                fut = futures[i] if i < len(futures) else None
                end_publish(span, fut is not None and not fut.cancelled() and fut.exception() is None)
        return acked

    # ------------------------------------------------------------------ repair

    async def republish(self, from_position: int, to_position: int | None = None) -> int:
        """Publish positions ``from_position..to_position`` (default: up to the offset) again.

        For when JetStream lost messages (a stream deleted or a server's storage lost). Messages
        JetStream still remembers inside its duplicate window are dropped as duplicates; older
        ones are stored again, which consumers ignore (they track positions). Returns the count
        acked; raises BusUnavailable with the position to resume from if JetStream stops acking.
        """
        upto = to_position if to_position is not None else await self.offset()
        position = max(from_position, 1) - 1
        count = 0
        async with self.store.pool.acquire() as conn:
            while position < upto:
                rows = await _fetch(conn, position, upto, self.options.batch_size)
                if not rows:
                    break
                acked = await self._publish(rows, position)
                count += sum(1 for r in rows if r.position <= acked)
                if acked < rows[-1].position:
                    raise BusUnavailable(f"republish stopped: resume with --republish-from {acked + 1}")
                position = acked
        return count


async def _fetch(conn: asyncpg.Connection, after: int, upto: int | None, limit: int) -> list[OutboxMessage]:
    rows = await conn.fetch(_SELECT_OUTBOX, after, upto, limit)
    return [
        OutboxMessage(
            position=r[0], event_id=r[1], stream_id=r[2], version=r[3], event_type=r[4],
            schema_version=r[5], payload=r[6].encode(), occurred_at=r[7], causation_id=r[8],
            correlation_id=r[9], trace=json.loads(r[10]) if r[10] else {}, service=r[11],
        )
        for r in rows
    ]  # fmt: skip


async def _close_quietly(conn: asyncpg.Connection) -> None:
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), timeout=2.0)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        conn.terminate()


# --------------------------------------------------------------------------- process entry


async def serve(
    database_url: str, nats_url: str, *, bus: BusConfig, options: RelayOptions, stop: asyncio.Event,
    republish_from: int | None = None, republish_to: int | None = None,
    health: HealthEndpoint | None = None,
) -> int:  # fmt: skip
    """Connect, then relay until ``stop`` (or republish once). Returns a process exit code.
    ``health`` (the metrics server's /healthz) is given the relay's probe once it is connected."""
    store = await retry_connect(
        lambda: EventStore.connect(database_url, min_size=1, max_size=2), what="relay", stop=stop
    )
    if store is None:
        return 0
    try:
        nc = await connect_until_stopped(nats_url, f"stratus-relay-{options.name}", stop)
        if nc is None:
            return 0
        try:
            relay = Relay(store, nc, bus, options)
            if health is not None:
                health.attach(relay_probe(relay, lambda: nc))
            if republish_from is not None:
                await ensure_stream(relay.js, bus)
                n = await relay.republish(republish_from, republish_to)
                log.info("relay %s: republished %d events from position %d", options.name, n, republish_from)
            else:
                sampler = asyncio.create_task(sample_relay(relay, stop))  # its /metrics gauges
                try:
                    await relay.run(stop)
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
            await nc.flush(timeout=5)
        finally:
            await nc.close()
    finally:
        await store.close()
    return 0
