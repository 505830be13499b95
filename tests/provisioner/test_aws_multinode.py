"""Multi-node replicas on the AWS provider against emulated AWS (moto server behind the fault
proxy, real boto3): a replica of N nodes is N instances in one zone and group, each booted with
its own node's script, found again by its tags, its state folded from every node's, terminated
whole; a node that cannot be created takes the ones already created down with the launch."""

from __future__ import annotations

import base64
import gzip
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.provisioner.clouds.aws import AwsProvider
from services.provisioner.clouds.base import Bootstrap, InstanceState, LaunchTask
from services.provisioner.clouds.errors import CapacityError, LaunchError
from services.provisioner.clouds.startup import render_startup_script
from tests.fakes.aws_ec2 import EmulatedAws, Fault
from tests.provisioner.test_aws_provider import (
    SECRET,
    aws,
    describe,
    ec2,
    emulated,
    make_provider,
    placement,
    svc,
    task,
    zone_names,
)

__all__ = ["aws", "emulated", "svc"]  # fixtures


@pytest.fixture
async def provider(aws: EmulatedAws) -> AsyncIterator[AwsProvider]:
    p = make_provider(aws)
    yield p
    await p.close()


def cluster(svc: str, replica_id: int = 1, nodes: int = 3, **kw: Any) -> LaunchTask:
    boots = [
        Bootstrap(url="https://203.0.113.1:8765/v1/bootstrap", token=f"node-token-{r}") for r in range(nodes)
    ]
    fields: dict[str, Any] = {"num_nodes": nodes, "bootstrap": boots[0], "node_bootstraps": boots, **kw}
    return task(svc, replica_id, **fields)


def tags(desc: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in desc.get("Tags") or []}


def states(aws: EmulatedAws, svc: str) -> dict[str, str]:
    found = ec2(aws).describe_instances(Filters=[{"Name": "tag:stratus:service", "Values": [svc]}])
    return {i["InstanceId"]: i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]}


async def test_a_replica_of_three_nodes_is_three_instances_each_with_its_own_script(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    assert AwsProvider.multi_node
    t = cluster(svc)
    inst = await provider.launch(placement("use1-az1"), t)
    assert len(inst.node_ids) == 3 and inst.instance_id == f"us-east-1/{inst.node_ids[0]}"
    descs = [describe(aws, i) for i in inst.node_ids]
    assert inst.node_ips == [d["PrivateIpAddress"] for d in descs]
    assert inst.url == f"http://{descs[0]['PublicIpAddress']}:8080"  # traffic and probes: the head
    zone = zone_names(aws)["use1-az1"]
    assert {d["Placement"]["AvailabilityZone"] for d in descs} == {zone}
    assert {d["SubnetId"] for d in descs} == {descs[0]["SubnetId"]}
    assert len({g["GroupId"] for d in descs for g in d["SecurityGroups"]}) == 1
    for rank, d in enumerate(descs):
        tg = tags(d)
        assert (tg["stratus:node-rank"], tg["stratus:num-nodes"], tg["stratus:replica-id"]) == (
            str(rank),
            "3",
            "1",
        )
        assert tg.get("stratus:head") == (None if rank == 0 else inst.node_ids[0])
    runs = aws.actions("RunInstances")
    assert len(runs) == 3 and len({r["ClientToken"] for r in runs}) == 3
    for rank, run in enumerate(runs):
        script = gzip.decompress(base64.b64decode(run["UserData"])).decode()
        assert script == render_startup_script(t.for_node(rank), cloud="aws")
        assert f"node-token-{rank}" in script and SECRET not in script
        assert f"export SKYPILOT_NODE_RANK={rank}\n" in script
    # The nodes reach each other on any port: all traffic from the group itself.
    group_id = descs[0]["SecurityGroups"][0]["GroupId"]
    (group,) = ec2(aws).describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    selfs = [p for p in group["IpPermissions"] if p["IpProtocol"] == "-1"]
    assert [[g["GroupId"] for g in p["UserIdGroupPairs"]] for p in selfs] == [[group_id]]
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING

    # Another multi-node replica of the service reuses the group and its rule (added once).
    await provider.launch(placement("use1-az1"), cluster(svc, 2, nodes=2))
    (group,) = ec2(aws).describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert len([p for p in group["IpPermissions"] if p["IpProtocol"] == "-1"]) == 1


async def test_a_restarted_provider_lists_heads_only_with_their_nodes(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    multi = await provider.launch(placement(), cluster(svc, 1, nodes=3))
    single = await provider.launch(placement(), task(svc, 2))
    restarted = make_provider(aws)
    found = {i.instance_id: i for i in await restarted.list_instances(svc)}
    assert set(found) == {multi.instance_id, single.instance_id}
    assert (found[multi.instance_id].node_ids, found[multi.instance_id].node_ips) == (
        multi.node_ids,
        multi.node_ips,
    )
    assert found[multi.instance_id].replica_id == 1 and found[multi.instance_id].url == multi.url
    assert (found[single.instance_id].node_ids, found[single.instance_id].node_ips) == ([], [])


async def test_status_folds_every_node_and_names_the_one_that_went(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    inst = await provider.launch(placement(), cluster(svc, 1, nodes=3))
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING
    # Someone terminates node 2 in the console, behind Stratus's back: the replica is over.
    ec2(aws).terminate_instances(InstanceIds=[inst.node_ids[2]])
    got = await provider.status(inst.instance_id)
    assert got.state == InstanceState.TERMINATED
    assert f"node 2 of 3 ({inst.node_ids[2]}): EC2 instance terminated" in got.detail

    spot = await provider.launch(placement(spot=True), cluster(svc, 2, nodes=2))
    aws.interrupt(spot.node_ids[1])  # AWS takes a worker back: the whole replica is preempted
    got = await provider.status(spot.instance_id)
    assert got.state == InstanceState.PREEMPTED and "node 1 of 2" in got.detail
    assert "SpotInstanceTermination" in got.detail


async def test_terminate_of_the_head_ends_every_node_and_release_deletes_the_group(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    inst = await provider.launch(placement(), cluster(svc, 1, nodes=3))
    await provider.terminate(inst.instance_id)
    assert set(states(aws, svc).values()) == {"terminated"}
    assert (await provider.status(inst.instance_id)).state == InstanceState.TERMINATED
    await provider.terminate(inst.instance_id)  # idempotent
    await provider.release(svc, [placement()])
    named = [{"Name": "group-name", "Values": [f"stratus-{svc}"]}]
    assert ec2(aws).describe_security_groups(Filters=named)["SecurityGroups"] == []


class NthRunFails:
    """Answers RunInstances from the ``n``-th on (1-based; boto3's retry too) with a capacity
    error: the proxy's own faults match by zone, not by order."""

    def __init__(self, aws: EmulatedAws, n: int) -> None:
        self.aws, self.n, self.seen = aws, n, 0
        self.original = aws.fault_for

    def __call__(self, action: str, params: dict[str, str]) -> Fault | None:
        if action == "RunInstances":
            self.seen += 1
            if self.seen >= self.n:
                return Fault("InsufficientInstanceCapacity", "We currently do not have sufficient g5.xlarge "
                             "capacity in the Availability Zone you requested", 500, None, None)  # fmt: skip
        return self.original(action, params)


async def test_a_node_without_capacity_takes_the_created_nodes_down_with_the_launch(
    svc: str, aws: EmulatedAws, provider: AwsProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws, "fault_for", NthRunFails(aws, 3))
    with pytest.raises(CapacityError, match="InsufficientInstanceCapacity"):
        await provider.launch(placement(), cluster(svc, 1, nodes=3))
    assert len(aws.actions("RunInstances")) == 4  # node 3's request and boto3's one retry of it
    created = states(aws, svc)
    assert len(created) == 2 and set(created.values()) == {"terminated"}
    assert await provider.list_instances(svc) == []


async def test_a_repeated_launch_returns_the_nodes_it_already_started(
    svc: str, aws: EmulatedAws, provider: AwsProvider
) -> None:
    first = await provider.launch(placement(), cluster(svc, 1, nodes=2))
    # A redelivered launch: same ClientTokens, new tokens in the user-data, so EC2 refuses each
    # node's request as IdempotentParameterMismatch and the provider finds that node by its rank.
    aws.fail_run("IdempotentParameterMismatch", "inconsistent", status=400, times=2)
    boots = [Bootstrap(url="https://x/v1/bootstrap", token=f"again-{r}") for r in range(2)]
    again = await provider.launch(
        placement(), cluster(svc, 1, nodes=2, bootstrap=boots[0], node_bootstraps=boots)
    )
    assert (again.instance_id, again.node_ids, again.node_ips) == (
        first.instance_id,
        first.node_ids,
        first.node_ips,
    )
    assert len(states(aws, svc)) == 2


async def test_a_script_over_the_user_data_limit_launches_no_node(
    svc: str, aws: EmulatedAws, provider: AwsProvider, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "blob.bin").write_bytes(os.urandom(20_000))  # random: gzip cannot shrink it under 16 KiB
    with pytest.raises(LaunchError, match="user-data limit"):
        await provider.launch(placement(), cluster(svc, 1, nodes=2, workdir=str(workdir)))
    assert aws.actions("RunInstances") == []
    # One token shared by every node would let only one of them boot.
    with pytest.raises(LaunchError, match="a bootstrap token per node"):
        await provider.launch(placement(), cluster(svc, 1, nodes=2, node_bootstraps=[]))
    assert aws.actions("RunInstances") == []
