"""The provisioner translates its providers' errors at the boundary: a cloud's ``TransientError``
(services/provisioner/clouds/errors.py) is not libs.events' ``TransientError``, so left alone it
would read as a bug to the consumer (dead-lettered) and to the monitor loop (process exit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.events import errors as events_errors
from libs.events.outcomes import classify
from libs.events.store import EventStore
from libs.events.types import PreemptionRequested, replica_stream
from services.provisioner.clouds.base import InstanceState, InstanceStatus
from services.provisioner.clouds.errors import LaunchError, ProviderError, TransientError
from services.provisioner.main import Provisioner
from tests.fakes.provider import FakeCloud, provisioner_on, record_fleet


@pytest.fixture
async def provisioner(store: EventStore, tmp_path: Path) -> AsyncIterator[tuple[Provisioner, FakeCloud]]:
    """Two replicas launched on a provider whose status and preempt calls fail as told (the
    others' workloads have ended)."""
    await record_fleet(store)
    cloud = FakeCloud(InstanceStatus(state=InstanceState.EXITED, exit_code=1, detail="the workload ended"))
    prov = await provisioner_on(store, tmp_path, cloud, poll_interval=0.2)
    try:
        yield prov, cloud
    finally:
        await prov.host.fleet.stop()


async def test_a_throttled_status_check_skips_that_replica_and_checks_the_rest(
    provisioner: tuple[Provisioner, FakeCloud],
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
    provisioner: tuple[Provisioner, FakeCloud], store: EventStore, error: ProviderError, outcome: str
) -> None:
    prov, cloud = provisioner
    cloud.preempt_error = error
    await store.append(replica_stream("web", 1), [PreemptionRequested(service="web", replica_id=1)])
    [rec] = [r for r in await store.read_all() if isinstance(r.event, PreemptionRequested)]
    async with store.transaction() as tx:
        with pytest.raises(events_errors.EventsError) as info:
            await prov.handle(rec, tx)
    assert classify(info.value) == outcome and isinstance(info.value.__cause__, type(error))
