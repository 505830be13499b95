"""A provider fake for the provisioner's own tests (no cloud behind it), and a provisioner on a
real event store with its fleet projection live: what the fault and error-boundary tests drive.

``FakeCloud`` launches nothing; the replicas it knows are the ones a test records as launched.
An instance reports ``otherwise`` (RUNNING by default) until preempted; a status or preempt call
fails as the test tells it; every preempt is counted (one fake may serve several provisioners).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import (
    Placement,
    ReplicaLaunched,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.fleet.projection import FLEET
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from services.provisioner.clouds.base import Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from services.provisioner.clouds.errors import LaunchError, ProviderError
from services.provisioner.main import Provisioner

SPEC: dict[str, Any] = {"service": {"readiness_path": "/", "replicas": 2}, "resources": {"ports": [8080]}}


class FakeCloud(Provider):
    cloud = "fake"

    def __init__(self, otherwise: InstanceStatus | None = None, *, preempt_seconds: float = 0.0) -> None:
        self.otherwise = otherwise or InstanceStatus(state=InstanceState.RUNNING)
        # How long a preempt call takes: a window for a second provisioner to try too.
        self.preempt_seconds = preempt_seconds
        self.preempts: list[str] = []
        self.status_errors: dict[str, ProviderError] = {}
        self.preempt_error: ProviderError | None = None

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        raise LaunchError("not used here")

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        return None

    async def status(self, instance_id: str) -> InstanceStatus:
        if instance_id in self.status_errors:
            raise self.status_errors[instance_id]
        if instance_id in self.preempts:
            return InstanceStatus(state=InstanceState.PREEMPTED)
        return self.otherwise

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return []

    async def preempt(self, instance_id: str, *, grace_seconds: float = 5.0) -> None:
        if self.preempt_error is not None:
            raise self.preempt_error
        await asyncio.sleep(self.preempt_seconds)
        self.preempts.append(instance_id)


async def record_fleet(store: EventStore, service: str = "web", replicas: int = 2) -> None:
    """``service`` requested (SPEC) with ``replicas`` launched, instance ``i-<replica id>``."""
    await store.append(service_stream(service), [ServiceRequested(service=service, spec=SPEC)])
    for rid in range(1, replicas + 1):
        await store.append(replica_stream(service, rid), [
            ReplicaScheduled(service=service, replica_id=rid),
            ReplicaLaunched(service=service, replica_id=rid, instance_id=f"i-{rid}", url="http://127.0.0.1:1"),
        ])  # fmt: skip


async def provisioner_on(
    store: EventStore, home: Path, cloud: Provider, *, poll_interval: float = 0.1
) -> Provisioner:
    """A provisioner over ``cloud`` on ``store``, its fleet projection started (stop it with
    ``prov.host.fleet.stop()``); no bus, no lease taken."""
    host = ServiceHost("provisioner", Settings(home=home, database_url=store.dsn))
    host._store = store
    host._fleet = LiveProjection(FLEET, store, poll_interval=poll_interval)
    await host._fleet.start()
    return Provisioner(host, cloud)
