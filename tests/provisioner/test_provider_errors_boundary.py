"""The provisioner translates its providers' errors at the boundary: a cloud's ``TransientError``
(services/provisioner/clouds/errors.py) is not libs.events' ``TransientError``, so left alone it
would read as a bug to the consumer (dead-lettered) and to the monitor loop (process exit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.events import errors as events_errors
from libs.events.outcomes import classify
from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.events.types import (
    PreemptionRequested,
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
from services.provisioner.clouds.errors import LaunchError, ProviderError, TransientError
from services.provisioner.main import Provisioner

SPEC = {"service": {"readiness_path": "/", "replicas": 2}, "resources": {"ports": [8080]}}


class FlakyCloud(Provider):
    """A provider whose status and preempt calls fail as told."""

    cloud = "flaky"

    def __init__(self) -> None:
        self.status_errors: dict[str, ProviderError] = {}
        self.preempt_error: ProviderError | None = None

    async def launch(self, placement: object, task: LaunchTask) -> Instance:  # type: ignore[override]
        raise LaunchError("not used here")

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        return None

    async def status(self, instance_id: str) -> InstanceStatus:
        if instance_id in self.status_errors:
            raise self.status_errors[instance_id]
        return InstanceStatus(state=InstanceState.EXITED, exit_code=1, detail="the workload ended")

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return []

    async def preempt(self, instance_id: str, *, grace_seconds: float = 5.0) -> None:
        if self.preempt_error is not None:
            raise self.preempt_error


@pytest.fixture
async def provisioner(store: EventStore, tmp_path: Path) -> AsyncIterator[tuple[Provisioner, FlakyCloud]]:
    await store.append(service_stream("web"), [ServiceRequested(service="web", spec=SPEC)])
    for rid in (1, 2):
        await store.append(replica_stream("web", rid), [
            ReplicaScheduled(service="web", replica_id=rid),
            ReplicaLaunched(service="web", replica_id=rid, instance_id=f"i-{rid}", url="http://127.0.0.1:1"),
        ])  # fmt: skip
    host = ServiceHost("provisioner", Settings(home=tmp_path, database_url=store.dsn))
    host._store = store
    host._fleet = LiveProjection(FLEET, store, poll_interval=0.2)
    await host._fleet.start()
    cloud = FlakyCloud()
    try:
        yield Provisioner(host, cloud), cloud
    finally:
        await host._fleet.stop()


async def test_a_throttled_status_check_skips_that_replica_and_checks_the_rest(
    provisioner: tuple[Provisioner, FlakyCloud],
) -> None:
    prov, cloud = provisioner
    cloud.status_errors["i-1"] = TransientError("rate limit exceeded")
    await prov.monitor()  # before: the cloud's TransientError escaped the loop (a "bug": exit)
    replicas = prov.host.fleet.state.services["web"].replicas
    assert replicas[1].exited is None  # checked again next round
    assert replicas[2].exited is not None and replicas[2].exited.exit_code == 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(TransientError("throttled"), "transient"), (LaunchError("no such instance type"), "permanent")],
)
async def test_a_failed_preempt_is_retried_or_dead_lettered_as_its_kind_says(
    provisioner: tuple[Provisioner, FlakyCloud], store: EventStore, error: ProviderError, outcome: str
) -> None:
    prov, cloud = provisioner
    cloud.preempt_error = error
    await store.append(replica_stream("web", 1), [PreemptionRequested(service="web", replica_id=1)])
    [rec] = [r for r in await store.read_all() if isinstance(r.event, PreemptionRequested)]
    async with store.transaction() as tx:
        with pytest.raises(events_errors.EventsError) as info:
            await prov.handle(rec, tx)
    assert classify(info.value) == outcome and isinstance(info.value.__cause__, type(error))
