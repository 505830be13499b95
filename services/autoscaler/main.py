"""The autoscaler service: QPS samples in, ScaleDecided out.

Its state is a projection of the log (``fold.py``: every tick that changes it is recorded, as a
ScaleDecided or a compact ScaleEvaluated), kept current by tailing the log and snapshotted like
the fleet's; nothing else is kept, so deleting the snapshot loses nothing and any instance can
decide. A periodic tick evaluates every autoscaling service, so a target can move down when
traffic stops; a held request (ScaleFromZeroRequested, or a sample with queued requests) and a
new version are evaluated at once.

A decision is taken in one transaction holding the service's advisory lock, once both
projections include everything committed before the lock was taken, with the last window of
samples read from the log in that transaction; its event commits in it. So two instances never
decide the same tick twice: the second one sees the first one's event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from libs.events.envelope import RecordedEvent
from libs.events.errors import ProjectionFailed
from libs.events.outcomes import TRANSIENT_ERRORS
from libs.events.projection import LiveProjection
from libs.events.store import Transaction
from libs.events.types import (
    QpsSampled,
    ScaleDecided,
    ScaleFromZeroRequested,
    ServiceUpdateRequested,
    service_stream,
)
from libs.fleet.policy import AutoscalePolicy, autoscale_policy
from libs.fleet.state import ServiceState
from libs.fleet.status import PROVISIONING, READY, STARTING, ready_spot, replica_status
from libs.runtime.host import EXIT_PROJECTION_FAILED, ServiceHost, run_main

from .decide import LiveReplica, evaluate
from .fold import AUTOSCALER, AutoscalerStates, with_samples
from .store import lock_service, recent_samples

log = logging.getLogger("stratus.autoscaler")

TYPES = [
    QpsSampled.__name__,
    ScaleFromZeroRequested.__name__,
    ServiceUpdateRequested.__name__,
]

# Seconds a decision waits for the projections to include the log's head.
PROJECTION_WAIT = 10.0


def live_replicas(svc: ServiceState) -> list[LiveReplica]:
    """The latest version's PROVISIONING, STARTING or READY replicas (per-accelerator targets)."""
    out = []
    for r in svc.replicas.values():
        status = replica_status(r)
        if r.version == svc.latest_version and status in (PROVISIONING, STARTING, READY):
            out.append(LiveReplica(next(iter(r.placement.accelerators), None), status == READY))
    return out


class Autoscaler:
    """``clock``: the ticks' time (tests drive it); ``tick_every``: seconds between periodic
    ticks (default the decision interval)."""

    def __init__(
        self, host: ServiceHost, window: float, interval: float, *,
        clock: Callable[[], float] = time.time, tick_every: float | None = None,
    ) -> None:  # fmt: skip
        self.host = host
        self.window = window
        self.interval = interval
        self.clock = clock
        self.tick_every = interval if tick_every is None else tick_every
        self._live: LiveProjection[AutoscalerStates] | None = None

    @property
    def live(self) -> LiveProjection[AutoscalerStates]:
        assert self._live is not None, "Autoscaler not started"
        return self._live

    def register(self) -> Callable[[], Awaitable[None]]:
        """Add the consumer, the tick and the projection's watch to the host; returns its
        ``on_started`` (which starts the projection)."""
        self.host.consumer(TYPES, self.handle)
        self.host.loop(self.tick_every, self.tick, name="tick")
        self.host.task(self._watch)
        return self.start

    async def start(self) -> None:
        self._live = LiveProjection(
            AUTOSCALER, self.host.store, poll_interval=1.0,
            snapshot_interval=self.host.settings.snapshot_interval,
        )  # fmt: skip
        try:
            await self._live.start()
        except ProjectionFailed as exc:
            self._live = None
            self._fail(exc)
            return
        log.info("autoscaler: state of %d services at position %d (%d replayed)",
                 len(self._live.state.services), self._live.position, self._live.replayed)  # fmt: skip

    async def _watch(self) -> None:
        """Stop the projection with the process; stop the process if it cannot fold."""
        live = self._live
        if live is None:
            return
        stopped = asyncio.ensure_future(self.host.stop.wait())
        failed = asyncio.ensure_future(live.wait_failed())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        for f in (stopped, failed):
            f.cancel()
        if failed.done() and not failed.cancelled():
            self._fail(failed.result())
        await live.stop()

    def _fail(self, exc: BaseException) -> None:
        log.critical("autoscaler: stopping: its projection failed: %s", exc)
        self.host.exit_code = EXIT_PROJECTION_FAILED
        self.host.stop.set()

    def _policy(self, svc: ServiceState) -> AutoscalePolicy:
        return autoscale_policy(
            svc.latest.typed, window_seconds=self.window, decision_interval_seconds=self.interval
        )

    def _autoscaled(self, name: str) -> ServiceState | None:
        svc = self.host.fleet.state.services.get(name)
        if svc is None or svc.terminated_at is not None or not svc.versions:
            return None
        return svc if self._policy(svc).autoscales else None

    async def handle(self, rec: RecordedEvent, tx: Transaction) -> None:
        event = rec.event
        if isinstance(event, QpsSampled) and event.queued == 0:
            return  # folded by the next tick's read of the window; only a held request is urgent
        await self.host.fleet.wait_for(rec.position, PROJECTION_WAIT)
        if self._autoscaled(event.service) is not None:
            await self._evaluate(tx, event.service)

    async def tick(self) -> None:
        for name in list(self.host.fleet.state.services):
            if self._autoscaled(name) is None:
                continue
            try:
                async with self.host.store.transaction() as tx:
                    await self._evaluate(tx, name)
            except TRANSIENT_ERRORS as exc:  # this service waits for the next tick, not the others
                log.warning("%s: tick: %r; next tick in %gs", name, exc, self.tick_every)

    async def _evaluate(self, tx: Transaction, name: str) -> None:
        head = await lock_service(tx.conn, name, hold=PROJECTION_WAIT + 5.0)
        await self.host.fleet.wait_for(head, PROJECTION_WAIT)
        states = await self.live.wait_for(head, PROJECTION_WAIT)
        svc = self._autoscaled(name)  # as of the head, now
        if svc is None:
            return
        policy = self._policy(svc)
        samples = await recent_samples(tx.conn, name, policy.window_seconds)
        state = with_samples(states.of(name), samples, window_seconds=policy.window_seconds)
        _, event = evaluate(policy, state, self.clock(), ready_spot=ready_spot(svc), live=live_replicas(svc))
        if event is None:
            return
        if isinstance(event, ScaleDecided):
            log.info("%s: %s", name, event.reason)
        else:
            log.debug("%s: hysteresis: %s", name, event.reason)
        await tx.append(service_stream(name), [event])


def build(host: ServiceHost) -> Callable[[], Awaitable[None]]:
    scaler = Autoscaler(host, window=host.settings.qps_window, interval=host.settings.decision_interval)
    return scaler.register()


def main() -> None:
    run_main("autoscaler", build)


if __name__ == "__main__":
    main()
