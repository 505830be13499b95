"""The provisioner's side of a multi-node cloud launch, on a real event store and Postgres: one
bootstrap token per node (rank 0's is the task's ``bootstrap``), the nodes' IPs recorded on them
once the provider returns, so each node's redeem answers; IPs it cannot record fail the launch
and take the nodes down (they would wait for peers forever)."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.bootstrap import ClusterNotReady, redeem
from libs.events.store import EventStore
from libs.events.types import (
    Placement,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    ReplicaScheduled,
    ServiceRequested,
    replica_stream,
    service_stream,
)
from services.provisioner.clouds.base import Instance, InstanceState, InstanceStatus, LaunchTask, Provider
from services.provisioner.clouds.local import LocalProvider
from services.provisioner.clouds.registry import CloudRouter
from tests.fakes.provider import provisioner_on

SPEC = {
    "service": {"readiness_path": "/", "replicas": 1}, "resources": {"ports": [8080], "cloud": "aws"},
    "run": "serve", "num_nodes": 3,
}  # fmt: skip
WHERE = Placement(cloud="aws", region="us-east-1", zone="use1-az1", instance_type="g5.xlarge")
IPS = ["172.31.1.10", "172.31.1.11", "172.31.1.12"]


class NodesCloud(Provider):
    """Launches nothing; answers a launch with a head whose node IPs are ``ips``."""

    cloud = "aws"
    needs_bootstrap = True
    multi_node = True

    def __init__(self, ips: list[str]) -> None:
        self.ips = ips
        self.tasks: list[LaunchTask] = []
        self.terminated: list[str] = []

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        self.tasks.append(task)
        ids = [f"i-{rank}" for rank in range(len(self.ips))]
        return Instance(
            instance_id="us-east-1/i-0", service=task.service, replica_id=task.replica_id,
            url="http://127.0.0.1:8080", placement=placement, node_ids=ids, node_ips=self.ips,
        )  # fmt: skip

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        self.terminated.append(instance_id)

    async def status(self, instance_id: str) -> InstanceStatus:
        return InstanceStatus(state=InstanceState.RUNNING)

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return []


async def launch_once(store: EventStore, home: Path, cloud: NodesCloud) -> object:
    await store.append(service_stream("svc"), [ServiceRequested(service="svc", version=1, spec=SPEC)])
    await store.append(
        replica_stream("svc", 1), [ReplicaScheduled(service="svc", replica_id=1, placement=WHERE)]
    )
    router = CloudRouter({"local": LocalProvider(home / "local"), "aws": cloud})
    prov = await provisioner_on(store, home, router)
    try:
        await prov.host.fleet.wait_for(await store.last_position(), 10)
        await prov.reconcile("svc")
    finally:
        await prov.host.fleet.stop()
    return [r.event for r in await store.read_stream(replica_stream("svc", 1))][-1]


async def test_every_node_gets_a_token_that_answers_with_its_rank_and_the_ips(
    store: EventStore, tmp_path: Path
) -> None:
    cloud = NodesCloud(IPS)
    last = await launch_once(store, tmp_path, cloud)
    assert isinstance(last, ReplicaLaunched) and last.instance_id == "aws:us-east-1/i-0"
    (task,) = cloud.tasks
    assert task.num_nodes == 3 and len({b.token for b in task.node_bootstraps}) == 3
    assert task.bootstrap == task.node_bootstraps[0]
    for rank in (2, 0, 1):
        boot = task.for_node(rank).bootstrap
        assert boot is not None
        got = await redeem(store.pool, boot.token, tmp_path)
        assert (got.node_rank, got.num_nodes, got.node_ips) == (rank, 3, tuple(IPS))
    assert cloud.terminated == []


async def test_ips_it_cannot_record_fail_the_launch_and_terminate_the_nodes(
    store: EventStore, tmp_path: Path
) -> None:
    cloud = NodesCloud(IPS[:2])  # a provider that lost a node's address
    last = await launch_once(store, tmp_path, cloud)
    assert isinstance(last, ReplicaLaunchFailed), last
    assert last.kind == "transient" and "2 node IPs for 3 nodes" in last.message
    assert cloud.terminated == ["us-east-1/i-0"]
    (task,) = cloud.tasks
    with pytest.raises(ClusterNotReady):
        await redeem(store.pool, task.node_bootstraps[1].token, tmp_path)
