"""Multi-node GCP replicas (``num_nodes > 1``) through the real client against the fake Compute API:
one VM per node, each with its own rank and bootstrap token; the head's id covers them all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.provisioner.clouds import gcp_names
from services.provisioner.clouds.base import Bootstrap, InstanceState, LaunchTask
from services.provisioner.clouds.errors import CapacityError, TransientError
from services.provisioner.clouds.gcp_firewall import NODES_DESCRIPTION
from tests.fakes.gcp_server import FakeCompute

from .gcp_fixtures import fake, inserted, make_provider, metadata, placement, task
from .helpers import eventually

__all__ = ["fake"]
ZONE = "us-central1-a"


def cluster_task(count: int = 3, **kw: Any) -> LaunchTask:
    boots = [
        Bootstrap(url="https://10.20.0.5:8765/v1/bootstrap", token=f"node-token-{r}") for r in range(count)
    ]
    return task(replica_id=4, num_nodes=count, bootstrap=boots[0], node_bootstraps=boots, **kw)


def names_of(instance_id: str) -> list[str]:
    return gcp_names.nodes_of(instance_id.partition("/")[2])


async def test_launch_creates_one_vm_per_node_with_its_rank_token_and_private_ip(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(ZONE), cluster_task(3))
    bodies = sorted(inserted(fake), key=lambda b: int(b["labels"]["stratus-node-rank"]))
    head = bodies[0]["name"]
    assert [b["name"] for b in bodies] == [head, head[:-6] + "-n1of3", head[:-6] + "-n2of3"]
    assert head.startswith("stratus-llm-4-") and head.endswith("-n0of3")
    for rank, body in enumerate(bodies):
        assert body["labels"] == {
            "stratus-service": "llm", "stratus-replica-id": "4", "stratus-version": "1",
            "stratus-node-rank": str(rank), "stratus-head": head,
        }  # fmt: skip
        assert body["tags"] == {"items": ["stratus-llm"]}
        assert body["machineType"] == "zones/us-central1-a/machineTypes/n1-standard-8"
        script = metadata(body)["startup-script"]
        assert f"node-token-{rank}" in script
        assert f"export SKYPILOT_NODE_RANK={rank}\n" in script and "export SKYPILOT_NUM_NODES=3\n" in script
        assert not any(f"node-token-{other}" in script for other in range(3) if other != rank)
    assert inst.instance_id == f"{ZONE}/{head}"
    assert inst.node_ids == [f"{ZONE}/{b['name']}" for b in bodies]
    networks = {name: i["networkInterfaces"][0]["networkIP"] for (_z, name), i in fake.instances.items()}
    assert inst.node_ips == [networks[b["name"]] for b in bodies]
    assert len(set(inst.node_ips)) == 3 and all(ip.startswith("10.128.0.") for ip in inst.node_ips)
    assert inst.url.startswith("http://203.0.113.")  # the head's external address, as for one node
    assert (inst.service, inst.replica_id, inst.details["nodes"]) == ("llm", 4, "3")
    # The service's nodes may reach each other on every port; the service's own rule is unchanged.
    rule = fake.firewalls[gcp_names.nodes_firewall_name("llm")]
    assert (rule["sourceTags"], rule["targetTags"]) == (["stratus-llm"], ["stratus-llm"])
    assert sorted(a["IPProtocol"] for a in rule["allowed"]) == ["icmp", "tcp", "udp"]
    assert rule["description"] == NODES_DESCRIPTION.format(service="llm") and "sourceRanges" not in rule
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING
    await provider.close()


async def test_a_single_node_replica_gets_no_node_labels_and_no_nodes_rule(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(ZONE), task())
    [body] = inserted(fake)
    assert "stratus-node-rank" not in body["labels"] and (inst.node_ids, inst.node_ips) == ([], [])
    assert gcp_names.nodes_firewall_name("llm") not in fake.firewalls
    await provider.close()


async def test_list_instances_shows_heads_only_with_their_nodes(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    cluster = await provider.launch(placement(ZONE), cluster_task(3))
    single = await provider.launch(placement(ZONE), task(replica_id=5))
    restarted = make_provider(fake)  # nothing in memory: all from labels and names
    listed = {i.instance_id: i for i in await restarted.list_instances("llm")}
    assert sorted(listed) == sorted([cluster.instance_id, single.instance_id])
    found = listed[cluster.instance_id]
    assert (found.node_ids, found.node_ips, found.replica_id) == (cluster.node_ids, cluster.node_ips, 4)
    assert (listed[single.instance_id].node_ids, listed[single.instance_id].node_ips) == ([], [])
    with fake.lock:  # a worker gone: the head still lists its nodes, but no partial IP list
        del fake.instances[(ZONE, names_of(cluster.instance_id)[2])]
    [found] = [i for i in await restarted.list_instances() if i.instance_id == cluster.instance_id]
    assert (found.node_ids, found.node_ips) == (cluster.node_ids, [])
    await provider.close()
    await restarted.close()


async def test_status_aggregates_every_node(fake: FakeCompute) -> None:
    provider = make_provider(fake, address="private")
    inst = await provider.launch(placement(ZONE, use_spot=False), cluster_task(3))
    _head, one, two = names_of(inst.instance_id)
    fake.set_status(ZONE, two, "STAGING")
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.PROVISIONING and f"node 2 of 3 ({ZONE}/{two})" in status.detail
    fake.set_status(ZONE, two, "RUNNING")
    fake.set_status(ZONE, one, "TERMINATED")  # an on-demand worker stopped from inside
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.EXITED and f"node 1 of 3 ({ZONE}/{one})" in status.detail
    fake.set_status(ZONE, one, "RUNNING")
    with fake.lock:  # a worker deleted behind Stratus's back
        del fake.instances[(ZONE, two)]
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.EXITED
    assert f"node 2 of 3 ({ZONE}/{two})" in status.detail and "gone" in status.detail
    assert (await make_provider(fake).status(inst.instance_id)).state == InstanceState.EXITED
    await provider.terminate(inst.instance_id)
    assert fake.instances == {}
    await provider.close()


async def test_a_preempted_worker_preempts_the_replica(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(ZONE), cluster_task(2))
    _head, worker = names_of(inst.instance_id)
    fake.preempt(ZONE, worker)
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.PREEMPTED and f"node 1 of 2 ({ZONE}/{worker})" in status.detail
    await provider.close()


async def test_terminate_deletes_every_node_even_when_the_head_is_gone(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(ZONE), cluster_task(3))
    await provider.terminate(inst.instance_id)
    assert fake.instances == {}
    assert (await provider.status(inst.instance_id)).state == InstanceState.TERMINATED
    assert await provider.list_instances() == []
    await provider.terminate(inst.instance_id)  # idempotent

    other = await provider.launch(placement(ZONE), cluster_task(3))
    head = names_of(other.instance_id)[0]
    with fake.lock:
        del fake.instances[(ZONE, head)]
    restarted = make_provider(fake)
    assert (await restarted.status(other.instance_id)).state == InstanceState.NOT_FOUND
    await restarted.terminate(other.instance_id)
    assert fake.instances == {}
    await restarted.release("llm", [other.placement])  # no VM has the tag: both rules go
    assert fake.firewalls == {}
    await provider.close()
    await restarted.close()


@pytest.mark.parametrize("failing", ["-n0of3", "-n2of3"])
async def test_a_node_without_capacity_deletes_the_others_and_raises_as_one_node_would(
    fake: FakeCompute, failing: str
) -> None:
    code = "ZONE_RESOURCE_POOL_EXHAUSTED"
    fake.inject("insert", ZONE, 503, code, f"{code} in {ZONE}", on_operation=True, name=failing)
    provider = make_provider(fake)
    with pytest.raises(CapacityError) as info:
        await provider.launch(placement(ZONE), cluster_task(3))
    assert type(info.value) is CapacityError and code in str(info.value)
    assert len(inserted(fake)) == 3 and fake.instances == {}
    assert await provider.list_instances() == []
    inst = await provider.launch(placement("us-central1-b"), cluster_task(3))  # the zone next door
    assert len(inst.node_ids) == 3 and len(fake.instances) == 3
    await provider.close()


async def test_a_failed_insert_call_on_a_worker_deletes_every_node(fake: FakeCompute) -> None:
    fake.inject("insert", ZONE, 503, "backendError", "try again", name="-n1of3")
    provider = make_provider(fake)
    with pytest.raises(TransientError):
        await provider.launch(placement(ZONE), cluster_task(3))
    assert fake.instances == {}
    await provider.close()


async def test_a_cancelled_launch_deletes_the_nodes_it_created(fake: FakeCompute) -> None:
    fake.hold_operations = True  # the inserts are accepted and never finish
    provider = make_provider(fake)
    launch = asyncio.create_task(provider.launch(placement(ZONE), cluster_task(3)))

    async def created() -> int:
        return len(fake.instances)

    assert await eventually(created, lambda n: n == 3) == 3
    launch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await launch
    assert fake.instances == {}
    fake.hold_operations = False  # the waits still running in their threads end now
    await provider.close()


def test_node_names_fit_gcp_and_name_every_node_from_the_head() -> None:
    long = "a-very-long-service-name-" * 4
    names = gcp_names.node_names(long, 12345, 16, suffix="abc123")
    assert len(names) == 16 and len(set(names)) == 16
    assert all(len(n) <= gcp_names.MAX_NAME for n in names)
    assert all(gcp_names.parse_instance_id(f"{ZONE}/{n}") for n in names)
    assert gcp_names.nodes_of(names[0]) == names
    assert gcp_names.nodes_of(names[3]) == [names[3]]  # a worker's name is no head's
    single = gcp_names.instance_name("llm", 1, "abc123")
    assert gcp_names.node_names("llm", 1, 1, "abc123") == [single] and gcp_names.nodes_of(single) == [single]
