"""The scheduler service: one level-triggered reconciler per service.

A bus message only marks its service dirty; the reconcile reads the whole projected state,
asks the pure ``plan`` what to do, and records the actions as events. A new replica's first
event is appended with ``expected_version=0`` on its own stream, so a reconcile on a stale
projection (or a second scheduler instance) can never schedule the same replica id twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from msgspec.structs import replace

from libs.catalog import CatalogError, load_catalog
from libs.events.causation import using_cause
from libs.events.envelope import RecordedEvent
from libs.events.errors import ConcurrencyConflict
from libs.events.store import StreamAppend, Transaction
from libs.events.types import ALL_EVENT_TYPES, CloudsChecked, QpsSampled, replica_stream, service_stream
from libs.runtime.host import ServiceHost, run_main
from libs.runtime.workqueue import WorkQueue

from .plan import RequestTermination, SchedulerConfig, ScheduleReplica, plan, to_event

log = logging.getLogger("stratus.scheduler")

# Everything but the router's samples can change what the plan says.
TYPES = [t.__name__ for t in ALL_EVENT_TYPES if t is not QpsSampled]


class Scheduler:
    def __init__(self, host: ServiceHost, config: SchedulerConfig, catalog_home: Path | None = None) -> None:
        self.host = host
        self.config = config
        # With a home, each reconcile reads its catalog (cached per file mtime), so that
        # `stratus catalog refresh` takes effect without a restart.
        self.catalog_home = catalog_home
        self.queue = WorkQueue(self.reconcile, workers=4, cause_for=host.latest_causes.get)

    def current_config(self) -> SchedulerConfig:
        if self.catalog_home is None:
            return self.config
        try:
            offers = load_catalog(self.catalog_home).offers
        except CatalogError as exc:  # a broken refreshed file: keep placing with the last good one
            log.warning("catalog unreadable, keeping the previous one: %s", exc)
            return self.config
        if offers != self.config.catalog:
            self.config = replace(self.config, catalog=offers)
        return self.config

    async def handle(self, rec: RecordedEvent, tx: Transaction) -> None:
        await self.host.fleet.wait_for(rec.position, 10.0)
        if isinstance(rec.event, CloudsChecked):
            await self.resync()  # enabled clouds changed: every service may place differently
            return
        self.queue.add(rec.event.service)

    async def reconcile(self, service: str) -> None:
        # One reconcile of a service at a time across every scheduler instance, on a projection
        # that includes what the previous one appended (two would both request a termination).
        async with self.host.exclusive(f"scheduler:{service}") as tx:
            last = await self._reconcile(service, tx)
        if last:
            await self.host.fleet.wait_for(last, 10.0)

    async def _reconcile(self, service: str, tx: Transaction) -> int:
        svc = self.host.fleet.state.services.get(service)
        if svc is None:
            return 0
        actions = plan(svc, time.time(), self.current_config(), self.host.fleet.state.clouds)
        if not actions:
            return 0
        batches = []
        for action in actions:
            event = to_event(service, action)
            if isinstance(action, ScheduleReplica):
                batches.append(
                    StreamAppend(replica_stream(service, action.replica_id), [event], expected_version=0)
                )
            elif isinstance(action, RequestTermination):
                batches.append(StreamAppend(replica_stream(service, action.replica_id), [event]))
            else:
                batches.append(StreamAppend(service_stream(service), [event]))
        try:
            result = await tx.append_batches(batches)
        except ConcurrencyConflict as exc:
            # Our projection was behind; it catches up and the queue retries.
            log.info("reconcile %s: %s", service, exc)
            raise
        log.info("%s: %s", service, ", ".join(type(a).__name__ for a in actions))
        return result.last_position

    async def resync(self) -> None:
        # Not caused by whatever is being handled now (a CloudsChecked): each reconcile carries
        # its own service's latest cause (WorkQueue cause_for), staying in that change's trace.
        with using_cause(None):
            for name, svc in list(self.host.fleet.state.services.items()):
                if svc.terminated_at is None:
                    self.queue.add(name)


def build(host: ServiceHost) -> Callable[[], Awaitable[None]]:
    config = SchedulerConfig(
        max_concurrent_launches=host.settings.max_concurrent_launches,
        drain_seconds=host.settings.drain_seconds,
        retry_backoff_seconds=host.settings.retry_backoff_seconds,
        spot_policy=host.settings.spot_policy,
        # The refreshed catalog under STRATUS_HOME (`stratus catalog refresh`), else the shipped one.
        catalog=load_catalog(host.settings.home).offers,
    )
    scheduler = Scheduler(host, config, catalog_home=host.settings.home)
    host.consumer(TYPES, scheduler.handle)
    host.loop(host.settings.resync_every(2.0), scheduler.resync, name="resync")
    host.task(lambda: scheduler.queue.run(host.stop))

    async def on_started() -> None:
        await scheduler.resync()

    return on_started


def main() -> None:
    run_main("scheduler", build)


if __name__ == "__main__":
    main()
