"""Multi-node Azure replicas (``num_nodes > 1``) through the real azure-mgmt clients against the fake
ARM: one VM per node, each with its own rank and bootstrap token, one NSG letting the nodes reach
each other; the head's id covers them all."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from libs.events.types import Placement
from services.provisioner.clouds import azure_names
from services.provisioner.clouds.base import Bootstrap, InstanceState, LaunchTask
from services.provisioner.clouds.errors import CapacityError
from tests.fakes.azure_server import FakeArm

from .test_azure_provider import A100, ROUTER, SUB, MakeProvider, arm, make_provider, make_task

__all__ = ["arm", "make_provider"]
REGULAR = Placement(cloud="azure", region="eastus", instance_type="Standard_NC24ads_A100_v4")


def cluster_task(count: int = 3, **kw: Any) -> LaunchTask:
    boots = [
        Bootstrap(url="https://api.example.test/v1/bootstrap", token=f"node-token-{r}") for r in range(count)
    ]
    return make_task(replica_id=4, num_nodes=count, bootstrap=boots[0], node_bootstraps=boots, **kw)


def vm_path(group: str, vm: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{vm}"


def stratus_resources(arm: FakeArm) -> list[str]:
    """What is left of the replicas (the region's group, VNet and subnet are shared and stay)."""
    shared = ("Microsoft.Resources/resourceGroups", "Microsoft.Network/virtualNetworks")
    return sorted(k for k, r in arm.resources.items() if not r["type"].startswith(shared))


def vm_puts(arm: FakeArm) -> list[dict[str, Any]]:
    bodies = [r.body for r in arm.received("PUT", "virtualMachines")]
    return sorted(bodies, key=lambda b: int(b["tags"]["stratus-node-rank"]))


async def test_launch_creates_one_vm_per_node_with_its_rank_token_and_a_shared_nsg(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, cluster_task(3))
    group, head = inst.instance_id.split("/")
    vms = azure_names.nodes_of(head)
    assert len(vms) == 3 and head.startswith("stratus-llm-4-") and head.endswith("-n0of3")
    bodies = vm_puts(arm)
    assert [b["properties"]["osProfile"]["computerName"] for b in bodies] == vms
    nics = {r.path.rsplit("/", 1)[1]: r for r in arm.received("PUT", "networkInterfaces")}
    assert sorted(nics) == sorted(azure_names.nic_name(vm) for vm in vms)
    for rank, body in enumerate(bodies):
        tags = body["tags"]
        assert (tags["stratus-service"], tags["stratus-replica-id"], tags["stratus-vm"]) == (
            "llm",
            "4",
            vms[rank],
        )
        assert (tags["stratus-node-rank"], tags["stratus-head"]) == (str(rank), head)
        assert tags["stratus-private-ip"] == inst.node_ips[rank]
        script = base64.b64decode(body["properties"]["osProfile"]["customData"]).decode()
        assert f"node-token-{rank}" in script
        assert f"export SKYPILOT_NODE_RANK={rank}\n" in script and "export SKYPILOT_NUM_NODES=3\n" in script
        assert not any(f"node-token-{other}" in script for other in range(3) if other != rank)
        nic = nics[azure_names.nic_name(vms[rank])].body["properties"]
        assert nic["networkSecurityGroup"]["id"].endswith(
            f"/networkSecurityGroups/{azure_names.nsg_name(head)}"
        )
    assert inst.node_ids == [f"{group}/{vm}" for vm in vms]
    assert len(set(inst.node_ips)) == 3 and all(ip.startswith("10.100.0.") for ip in inst.node_ips)
    assert inst.url.startswith("http://20.0.0.") and inst.details["nodes"] == "3"
    assert inst.details["private_ip"] == inst.node_ips[0]
    # One NSG, written twice: first the service's ports, then the nodes' addresses opened too.
    first, final = [
        r.body["properties"]["securityRules"] for r in arm.received("PUT", "networkSecurityGroups")
    ]
    assert "stratus-allow-nodes" not in [r["name"] for r in first]
    rules = {r["name"]: r["properties"] for r in final}
    nodes = rules["stratus-allow-nodes"]
    assert sorted(nodes["sourceAddressPrefixes"]) == sorted(f"{ip}/32" for ip in inst.node_ips)
    assert (nodes["protocol"], nodes["destinationPortRange"], nodes["access"]) == ("*", "*", "Allow")
    assert nodes["priority"] < rules["stratus-deny-other-inbound"]["priority"]
    assert rules["stratus-allow-8080"]["sourceAddressPrefixes"] == [ROUTER]
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING


async def test_a_single_node_replica_gets_no_node_tags_and_no_node_rule(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    inst = await make_provider().launch(A100, make_task())
    (body,) = [r.body for r in arm.received("PUT", "virtualMachines")]
    assert "stratus-node-rank" not in body["tags"] and (inst.node_ids, inst.node_ips) == ([], [])
    (nsg,) = arm.received("PUT", "networkSecurityGroups")
    assert "stratus-allow-nodes" not in [r["name"] for r in nsg.body["properties"]["securityRules"]]


async def test_list_instances_shows_heads_only_with_their_nodes(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    cluster = await provider.launch(A100, cluster_task(3))
    single = await provider.launch(A100, make_task(replica_id=5))
    listed = {i.instance_id: i for i in await make_provider().list_instances("llm")}
    assert sorted(listed) == sorted([cluster.instance_id, single.instance_id])
    found = listed[cluster.instance_id]
    assert (found.node_ids, found.node_ips, found.url) == (cluster.node_ids, cluster.node_ips, cluster.url)
    assert (listed[single.instance_id].node_ids, listed[single.instance_id].node_ips) == ([], [])
    group, head = cluster.instance_id.split("/")
    arm.evict(vm_path(group, azure_names.nodes_of(head)[2]))  # a worker gone: no partial IP list
    [found] = [i for i in await provider.list_instances() if i.instance_id == cluster.instance_id]
    assert (found.node_ids, found.node_ips) == (cluster.node_ids, [])


async def test_status_aggregates_every_node(arm: FakeArm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    inst = await provider.launch(REGULAR, cluster_task(3))
    group, head = inst.instance_id.split("/")
    _head, one, two = azure_names.nodes_of(head)
    arm.set_power_state(vm_path(group, two), "PowerState/starting")
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.PROVISIONING and f"node 2 of 3 ({group}/{two})" in status.detail
    arm.set_power_state(vm_path(group, two), "PowerState/running")
    arm.set_power_state(vm_path(group, one), "PowerState/stopped")
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.EXITED and f"node 1 of 3 ({group}/{one})" in status.detail
    arm.set_power_state(vm_path(group, one), "PowerState/running")
    with arm.lock:  # a worker and its NIC deleted behind Stratus's back
        for key in [k for k in arm.resources if two.lower() in k]:
            del arm.resources[key]
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.EXITED
    assert f"node 2 of 3 ({group}/{two})" in status.detail and "gone" in status.detail
    await provider.terminate(inst.instance_id)
    assert stratus_resources(arm) == []


async def test_an_evicted_worker_preempts_the_replica(arm: FakeArm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, cluster_task(2))
    group, head = inst.instance_id.split("/")
    worker = azure_names.nodes_of(head)[1]
    arm.evict(vm_path(group, worker))
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.PREEMPTED and f"node 1 of 2 ({group}/{worker})" in status.detail


async def test_terminate_deletes_every_node_even_when_the_head_is_gone(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, cluster_task(3))
    assert len(stratus_resources(arm)) == 3 * 4 + 1  # per node VM, NIC, IP, disk; one NSG
    await provider.terminate(inst.instance_id)
    assert stratus_resources(arm) == []
    assert (await provider.status(inst.instance_id)).state == InstanceState.NOT_FOUND
    assert await provider.list_instances() == []
    await provider.terminate(inst.instance_id)  # idempotent

    other = await provider.launch(A100, cluster_task(3))
    group, head = other.instance_id.split("/")
    arm.evict(vm_path(group, head))
    restarted = make_provider()
    assert (await restarted.status(other.instance_id)).state == InstanceState.PREEMPTED
    await restarted.terminate(other.instance_id)
    assert stratus_resources(arm) == []


async def test_release_deletes_what_evicted_nodes_left_workers_before_the_head(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, cluster_task(3))
    group, head = inst.instance_id.split("/")
    for vm in azure_names.nodes_of(head):  # every node evicted: their NICs, IPs and the NSG stay
        arm.evict(vm_path(group, vm))
    assert len(stratus_resources(arm)) == 3 * 2 + 1
    await provider.release("llm", [A100])  # the NSG goes only once no NIC holds it
    assert stratus_resources(arm) == []
    assert arm.of_type("Microsoft.Resources/resourceGroups") == []


@pytest.mark.parametrize("failing", ["-n0of3", "-n2of3"])
async def test_a_node_without_capacity_deletes_every_node_and_raises_as_one_node_would(
    arm: FakeArm, make_provider: MakeProvider, failing: str
) -> None:
    arm.inject("AllocationFailed", on_operation=True, region="eastus", name=failing)
    provider = make_provider()
    with pytest.raises(CapacityError) as info:
        await provider.launch(A100, cluster_task(3))
    assert type(info.value) is CapacityError and "AllocationFailed" in str(info.value)
    assert len(arm.received("PUT", "virtualMachines")) == 3
    assert stratus_resources(arm) == []
    assert await provider.list_instances() == []


def test_vm_names_fit_azure_and_name_every_node_from_the_head() -> None:
    names = azure_names.vm_names("a-very-long-service-name-" * 4, 12345, 16, suffix="abc123")
    assert len(set(names)) == 16 and all(len(n) <= azure_names.MAX_VM_NAME for n in names)
    assert all(azure_names.parse_instance_id(f"stratus-eastus/{n}") for n in names)
    assert azure_names.nodes_of(names[0]) == names and azure_names.nodes_of(names[5]) == [names[5]]
    single = azure_names.vm_name("llm", 1, "abc123")
    assert azure_names.vm_names("llm", 1, 1, "abc123") == [single] and azure_names.nodes_of(single) == [
        single
    ]
