"""Workload output stays in the replica's log: ``ReplicaProcessExited`` carries the provider's
sentence only, and events recorded with the old ``log_tail`` still decode and display."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from libs.events.codec import decode
from libs.events.store import EventStore
from libs.events.types import (
    Placement,
    ReplicaLaunched,
    ReplicaProcessExited,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from libs.fleet import describe_failure
from libs.runtime.host import ServiceHost
from libs.runtime.settings import Settings
from services.provisioner.clouds.base import Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from services.provisioner.main import Provisioner

WORKLOAD_OUTPUT = "Traceback ... password=workload-printed-4410"
SPEC = {"service": {"readiness_path": "/", "ports": 8080}, "resources": {"ports": [8080]}, "run": "x"}


class ExitedProvider(Provider):
    """Every instance has exited with code 3 and left a log full of workload output."""

    def __init__(self, log: Path) -> None:
        self.log = log

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        raise AssertionError("not launched in this test")

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        return None

    async def status(self, instance_id: str) -> InstanceStatus:
        return InstanceStatus(state=InstanceState.EXITED, exit_code=3, detail="run exited with code 3")

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return []

    def log_path(self, instance_id: str) -> Path | None:
        return self.log


async def test_the_monitor_records_the_reason_not_the_log(
    store: EventStore, nats_url: str, unique: str, tmp_path: Path
) -> None:
    log = tmp_path / "replica-1.log"
    log.write_text(("noise\n" * 50) + WORKLOAD_OUTPUT + "\n")
    await store.append(service_stream("svc"), [ServiceRequested(service="svc", version=1, spec=SPEC)])
    await store.append(
        replica_stream("svc", 1),
        [
            ReplicaScheduled(service="svc", replica_id=1, version=1),
            ReplicaLaunched(service="svc", replica_id=1, instance_id="i-1", url="http://127.0.0.1:1"),
        ],
    )
    settings = Settings(
        home=tmp_path / "home", database_url=store.dsn, nats_url=nats_url, bus_prefix=f"t{unique}"
    )
    host = ServiceHost("provisioner", settings)
    provisioner = Provisioner(host, ExitedProvider(log))

    async def monitor_once() -> None:
        await host.fleet.wait_for(await store.last_position(), 10)
        await provisioner.monitor()
        host.stop.set()

    await asyncio.wait_for(host.run(on_started=monitor_once), 30)

    exited = [r.event for r in await store.read_stream(replica_stream("svc", 1))][-1]
    assert isinstance(exited, ReplicaProcessExited)
    assert (exited.exit_code, exited.reason, exited.log_tail) == (3, "run exited with code 3", "")
    payloads = [row[0] for row in await store.pool.fetch("SELECT payload::text FROM stratus_events")]
    assert not any("workload-printed-4410" in p or "noise" in p for p in payloads)
    replica = host.fleet.state.services["svc"].replicas[1]
    assert describe_failure(replica) == "replica 1 FAILED: run exited with code 3"


def test_an_old_event_with_a_log_tail_still_decodes() -> None:
    payload = json.dumps(
        {"service": "svc", "replica_id": 1, "instance_id": "i-1", "exit_code": 3, "log_tail": "boom\n"}
    )
    event = decode("ReplicaProcessExited", 1, payload)
    assert isinstance(event, ReplicaProcessExited)
    assert (event.log_tail, event.reason, event.exit_code) == ("boom\n", "", 3)
