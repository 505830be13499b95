"""`down` leaves no cloud resource behind: each provider's ``release`` deletes what Stratus created
for the service (AWS security group, GCP firewall rule, Azure leftovers and resource group) once no
instance uses it, and nothing it did not create. AWS against moto in server mode, GCP and Azure
through their real SDK clients against the fake servers in tests/fakes/."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.network.models import NetworkSecurityGroup

from libs.events.types import Placement
from libs.fleet.state import ReplicaState, ServiceState, TerminationRequest
from services.provisioner.clouds.aws import AwsProvider
from services.provisioner.clouds.aws_network import group_name
from services.provisioner.clouds.azure import AzureProvider
from services.provisioner.clouds.azure_config import AzureConfig
from services.provisioner.clouds.base import Instance, InstanceStatus, LaunchTask, Provider
from services.provisioner.clouds.gcp_names import firewall_name, service_tag
from services.provisioner.clouds.local import LocalProvider
from services.provisioner.clouds.registry import CloudRouter, releasable, release_unused
from tests.fakes.aws_ec2 import EmulatedAws
from tests.fakes.azure_server import FakeArm, StaticCredential
from tests.fakes.gcp_server import FakeCompute

from . import gcp_fixtures as gcpf
from .test_aws_provider import AWS_ENV, ec2, emulated
from .test_aws_provider import make_provider as make_aws
from .test_aws_provider import placement as aws_placement
from .test_aws_provider import task as aws_task
from .test_azure_provider import A100, ROUTER, SSH_KEY, SUB, arm, make_task

__all__ = ["arm", "emulated"]  # the AWS (moto server) and Azure (fake ARM) fixtures

# --------------------------------------------------------------------------------------- AWS


@pytest.fixture
async def aws(emulated: EmulatedAws, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AwsProvider]:
    for var, value in AWS_ENV.items():
        monkeypatch.setenv(var, value)
    emulated.clear()
    provider = make_aws(emulated)
    yield provider
    await provider.close()


def groups_named(emulated: EmulatedAws, name: str) -> list[dict[str, Any]]:
    found = ec2(emulated).describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    groups: list[dict[str, Any]] = found["SecurityGroups"]
    return groups


async def test_aws_release_deletes_the_service_group_once_its_instances_are_gone(
    emulated: EmulatedAws, aws: AwsProvider
) -> None:
    svc, other = f"rel-{uuid.uuid4().hex[:8]}", f"keep-{uuid.uuid4().hex[:8]}"
    a = await aws.launch(aws_placement(), aws_task(svc, 1))
    b = await aws.launch(aws_placement("use1-az2"), aws_task(svc, 2))
    await aws.launch(aws_placement(), aws_task(other, 1))
    vpc = ec2(emulated).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    # A user's own group, in the same VPC, with no Stratus tag: never Stratus's business.
    ec2(emulated).create_security_group(GroupName=f"mine-{svc}", Description="mine", VpcId=vpc["VpcId"])
    assert len(groups_named(emulated, group_name(svc))) == 1

    await aws.terminate(a.instance_id)
    await aws.release(svc, [a.placement])  # replica 2 still runs: its group stays
    assert len(groups_named(emulated, group_name(svc))) == 1

    await aws.terminate(b.instance_id)
    await aws.release(svc, [b.placement])
    assert groups_named(emulated, group_name(svc)) == []
    assert len(groups_named(emulated, group_name(other))) == 1
    assert len(groups_named(emulated, f"mine-{svc}")) == 1
    await aws.release(svc, [b.placement])  # idempotent: nothing left is fine


async def test_aws_release_leaves_an_untagged_group_of_the_same_name_alone(
    emulated: EmulatedAws, aws: AwsProvider
) -> None:
    svc = f"hand-{uuid.uuid4().hex[:8]}"
    vpc = ec2(emulated).describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2(emulated).create_security_group(GroupName=group_name(svc), Description="by hand", VpcId=vpc["VpcId"])
    await aws.release(svc, [aws_placement()])
    assert len(groups_named(emulated, group_name(svc))) == 1


# --------------------------------------------------------------------------------------- GCP


@pytest.fixture
def gcp() -> Iterator[FakeCompute]:
    with FakeCompute().serving() as server:
        yield server


async def test_gcp_release_deletes_the_firewall_rule_once_no_vm_has_the_tag(gcp: FakeCompute) -> None:
    provider = gcpf.make_provider(gcp)
    try:
        a = await provider.launch(gcpf.placement(), gcpf.task("llm", 1))
        b = await provider.launch(gcpf.placement("us-central1-b"), gcpf.task("llm", 2))
        await provider.launch(gcpf.placement(), gcpf.task("other", 1))
        # A rule someone wrote by hand under the name Stratus would use for "mine": not Stratus's.
        gcp.firewalls[firewall_name("mine")] = {
            "name": firewall_name("mine"), "description": "the team's own rule",
            "targetTags": [service_tag("mine")], "selfLink": "x", "id": "1",
        }  # fmt: skip
        assert firewall_name("llm") in gcp.firewalls

        await provider.terminate(a.instance_id)
        await provider.release("llm", [a.placement])
        assert firewall_name("llm") in gcp.firewalls  # replica 2 still carries the tag

        await provider.terminate(b.instance_id)
        await provider.release("llm", [b.placement])
        assert firewall_name("llm") not in gcp.firewalls
        assert firewall_name("other") in gcp.firewalls
        await provider.release("mine", [b.placement])
        assert firewall_name("mine") in gcp.firewalls
        await provider.release("llm", [b.placement])  # idempotent
        assert [
            r.method for r in gcp.requests if r.path.endswith(f"/firewalls/{firewall_name('llm')}")
        ].count("DELETE") == 1
    finally:
        await provider.close()


# --------------------------------------------------------------------------------------- Azure


@pytest.fixture
async def azure(arm: FakeArm) -> AsyncIterator[AzureProvider]:
    config = AzureConfig(
        source_ranges=(ROUTER,), ssh_public_key=SSH_KEY, poll_interval_s=0.01, retry_total=0,
        operation_timeout_s=20.0,
    )  # fmt: skip
    provider = AzureProvider(
        SUB, StaticCredential(), config=config, base_url=arm.base_url, connection_verify=arm.ca_path
    )
    yield provider
    await provider.close()


def of_type(arm: FakeArm, rtype: str) -> list[str]:
    return sorted(r["name"] for r in arm.of_type(rtype))


async def test_azure_release_deletes_leftovers_then_the_empty_resource_group(
    arm: FakeArm, azure: AzureProvider
) -> None:
    a = await azure.launch(A100, make_task(replica_id=1))
    b = await azure.launch(A100, make_task(replica_id=2))
    # Azure evicts replica 2 (eviction policy Delete): its NIC, IP and NSG stay behind.
    arm.evict(
        f"/subscriptions/{SUB}/resourceGroups/stratus-eastus/providers/Microsoft.Compute/virtualMachines/{b.details['vm_name']}"
    )
    assert len(of_type(arm, "Microsoft.Network/networkInterfaces")) == 2

    await azure.release("llm", [A100])  # replica 1 still runs: only 2's leftovers go, the group stays
    assert of_type(arm, "Microsoft.Network/networkInterfaces") == [f"{a.details['vm_name']}-nic"]
    assert of_type(arm, "Microsoft.Network/networkSecurityGroups") == [f"{a.details['vm_name']}-nsg"]
    assert of_type(arm, "Microsoft.Network/publicIPAddresses") == [f"{a.details['vm_name']}-ip"]
    assert of_type(arm, "Microsoft.Resources/resourceGroups") == ["stratus-eastus"]

    await azure.terminate(a.instance_id)
    await azure.release("llm", [A100])
    assert of_type(arm, "Microsoft.Resources/resourceGroups") == []
    assert of_type(arm, "Microsoft.Network/virtualNetworks") == []
    await azure.release("llm", [A100])  # idempotent: the group is gone already


async def test_azure_release_keeps_a_group_holding_something_not_stratus(
    arm: FakeArm, azure: AzureProvider
) -> None:
    a = await azure.launch(A100, make_task())
    await azure.terminate(a.instance_id)
    # Someone put their own resource in Stratus's group: the group (and it) must stay.
    await azure._call(
        "put a user's NSG",
        lambda: azure._clients.network.network_security_groups.begin_create_or_update(
            "stratus-eastus", "theirs", NetworkSecurityGroup(location="eastus")
        ).result(),
    )
    await azure.release("llm", [A100])
    assert of_type(arm, "Microsoft.Resources/resourceGroups") == ["stratus-eastus"]
    assert of_type(arm, "Microsoft.Network/networkSecurityGroups") == ["theirs"]


# --------------------------------------------------------------------------------------- when


def replica(rid: int, cloud: str = "aws", region: str = "us-east-1", *, ended: bool = False) -> ReplicaState:
    return ReplicaState(
        replica_id=rid, placement=Placement(cloud=cloud, region=region),
        termination=TerminationRequest(reason="down", drain_seconds=0, at=1.0),
        terminated_at=2.0 if ended else None,
    )  # fmt: skip


def test_releasable_only_for_a_service_going_down_with_no_replica_left_there() -> None:
    r1, r2 = replica(1), replica(2)
    up = ServiceState(name="s", replicas={1: r1, 2: r2})
    assert releasable(up, r1) == []  # not going down: a scale-down keeps the group
    down = ServiceState(name="s", down_requested_at=1.0, replicas={1: r1, 2: r2})
    assert releasable(down, r1) == []  # replica 2 still in that region
    done = ServiceState(name="s", down_requested_at=1.0, replicas={1: r1, 2: replica(2, ended=True)})
    assert releasable(done, r1) == [r1.placement]
    elsewhere = ServiceState(
        name="s", down_requested_at=1.0, replicas={1: r1, 2: replica(2, region="eu-west-1")}
    )
    assert releasable(elsewhere, r1) == [r1.placement]
    assert releasable(None, r1) == [r1.placement]  # the service is gone from the projection
    assert releasable(done, replica(1, "local", "local")) == []


class Recording(Provider):
    cloud = "aws"

    def __init__(self) -> None:
        self.released: list[tuple[str, list[Placement]]] = []

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        raise NotImplementedError

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        return None

    async def status(self, instance_id: str) -> InstanceStatus:
        raise NotImplementedError

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return []

    async def release(self, service: str, placements: Any) -> None:
        self.released.append((service, list(placements)))


async def test_the_router_sends_release_to_the_placements_cloud(tmp_path: Path) -> None:
    cloud = Recording()
    router = CloudRouter({"local": LocalProvider(tmp_path), "aws": cloud})
    r1 = replica(1)
    await release_unused(router, "s", ServiceState(name="s", down_requested_at=1.0, replicas={1: r1}), r1)
    assert cloud.released == [("s", [r1.placement])]
    await release_unused(router, "s", ServiceState(name="s", replicas={1: r1}), r1)
    assert len(cloud.released) == 1
