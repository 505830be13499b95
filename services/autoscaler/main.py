"""The autoscaler service: QPS samples in, ScaleDecided out.

Each QpsSampled / ScaleFromZeroRequested is folded into the service's ``AutoscalerState`` (a
Postgres projection row) in the consumer's transaction; a periodic tick evaluates every
autoscaling service, so a target can move down when traffic stops and no samples arrive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from libs.events.envelope import RecordedEvent
from libs.events.store import Transaction
from libs.events.types import (
    QpsSampled,
    ScaleFromZeroRequested,
    ServiceTerminated,
    ServiceUpdateRequested,
    service_stream,
)
from libs.fleet.policy import autoscale_policy
from libs.fleet.state import ServiceState
from libs.fleet.status import PROVISIONING, READY, STARTING, ready_spot, replica_status
from libs.runtime.host import ServiceHost, run_main

from .decide import (
    AutoscalerState,
    LiveReplica,
    decide,
    record_sample,
    request_scale_from_zero,
    reset_for_update,
)
from .store import delete_state, ensure_schema, load_state, save_state

log = logging.getLogger("stratus.autoscaler")

TYPES = [
    QpsSampled.__name__,
    ScaleFromZeroRequested.__name__,
    ServiceTerminated.__name__,
    ServiceUpdateRequested.__name__,
]


def live_replicas(svc: ServiceState) -> list[LiveReplica]:
    """The latest version's PROVISIONING, STARTING or READY replicas (per-accelerator targets)."""
    out = []
    for r in svc.replicas.values():
        status = replica_status(r)
        if r.version == svc.latest_version and status in (PROVISIONING, STARTING, READY):
            out.append(LiveReplica(next(iter(r.placement.accelerators), None), status == READY))
    return out


class Autoscaler:
    def __init__(self, host: ServiceHost, window: float, interval: float) -> None:
        self.host = host
        self.window = window
        self.interval = interval

    def _policy(self, svc: ServiceState):  # type: ignore[no-untyped-def]
        return autoscale_policy(
            svc.latest.typed, window_seconds=self.window, decision_interval_seconds=self.interval
        )

    async def handle(self, rec: RecordedEvent, tx: Transaction) -> None:
        await self.host.fleet.wait_for(rec.position, 10.0)
        event = rec.event
        if isinstance(event, ServiceTerminated):
            await delete_state(tx.conn, event.service)
            return
        svc = self.host.fleet.state.services.get(event.service)
        if svc is None or svc.terminated_at is not None:
            return
        policy = self._policy(svc)
        if not policy.autoscales:
            return
        state = await load_state(tx.conn, event.service, for_update=True)
        if isinstance(event, QpsSampled):
            state = record_sample(state, event, window_seconds=policy.window_seconds)
        elif isinstance(event, ScaleFromZeroRequested):
            state = request_scale_from_zero(state, rec.occurred_at.timestamp())
        elif isinstance(event, ServiceUpdateRequested):
            state = reset_for_update(state)  # SkyServe's update_version: no streak, re-target now
        await self._decide(tx, svc, state)

    async def _decide(self, tx: Transaction, svc: ServiceState, state: AutoscalerState) -> None:
        policy = self._policy(svc)
        new, decision = decide(
            policy, state, time.time(), ready_spot=ready_spot(svc), live=live_replicas(svc)
        )
        await save_state(tx.conn, new)
        if decision is not None:
            log.info("%s: %s", svc.name, decision.reason)
            await tx.append(service_stream(svc.name), [decision])

    async def tick(self) -> None:
        for svc in list(self.host.fleet.state.services.values()):
            if svc.terminated_at is not None or not svc.versions or not self._policy(svc).autoscales:
                continue
            async with self.host.locks(svc.name), self.host.store.transaction() as tx:
                state = await load_state(tx.conn, svc.name, for_update=True)
                await self._decide(tx, svc, state)


def build(host: ServiceHost) -> Callable[[], Awaitable[None]]:
    scaler = Autoscaler(
        host,
        window=host.settings.qps_window,
        interval=host.settings.decision_interval,
    )
    host.consumer(TYPES, scaler.handle)
    host.loop(scaler.interval, scaler.tick, name="tick")

    async def on_started() -> None:
        await ensure_schema(host.store.pool)

    return on_started


def main() -> None:
    run_main("autoscaler", build)


if __name__ == "__main__":
    main()
