"""GCP status, preemption, rediscovery and terminate through the real client and the fake API."""

from __future__ import annotations

from pathlib import Path

from services.provisioner.clouds.base import InstanceState
from services.provisioner.clouds.gcp_names import parse_instance_id
from services.provisioner.clouds.local import LocalProvider
from services.provisioner.clouds.registry import CloudRouter
from tests.fakes.gcp_server import FakeCompute

from .gcp_fixtures import fake, make_provider, placement, task

__all__ = ["fake"]


async def test_status_follows_the_vm_from_staging_to_running(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(), task())
    zone, name = parse_instance_id(inst.instance_id)
    fake.set_status(zone, name, "STAGING")
    staging = await provider.status(inst.instance_id)
    assert staging.state == InstanceState.PROVISIONING and "STAGING" in staging.detail
    fake.set_status(zone, name, "RUNNING")
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING
    await provider.close()


async def test_spot_preemption_is_reported_as_preempted(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(use_spot=True), task())
    zone, name = parse_instance_id(inst.instance_id)
    fake.preempt(zone, name)
    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.PREEMPTED
    assert "compute.instances.preempted" in status.detail
    # A restarted provisioner still finds the preempted VM, so it can replace and delete it.
    [found] = await make_provider(fake).list_instances("llm")
    assert found.instance_id == inst.instance_id
    await provider.close()


async def test_a_stopped_spot_vm_is_preempted_even_without_the_operation_on_record(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(use_spot=True), task())
    zone, name = parse_instance_id(inst.instance_id)
    fake.set_status(zone, name, "TERMINATED")
    assert (await provider.status(inst.instance_id)).state == InstanceState.PREEMPTED
    await provider.close()


async def test_a_stopped_on_demand_vm_exited_unless_gcp_took_it(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(use_spot=False), task())
    zone, name = parse_instance_id(inst.instance_id)
    fake.set_status(zone, name, "TERMINATED")
    assert (await provider.status(inst.instance_id)).state == InstanceState.EXITED
    fake.preempt(zone, name)  # records a compute.instances.preempted operation for it
    assert (await provider.status(inst.instance_id)).state == InstanceState.PREEMPTED
    await provider.close()


async def test_list_instances_rediscovers_replicas_by_their_labels(fake: FakeCompute) -> None:
    first = make_provider(fake)
    a = await first.launch(placement("us-central1-a"), task(replica_id=1))
    b = await first.launch(placement("europe-west4-b", use_spot=False), task(replica_id=2, version=3))
    c = await first.launch(placement("us-central1-a"), task(service="Other.Svc", replica_id=1))
    await first.close()

    restarted = make_provider(fake)
    llm = sorted(await restarted.list_instances("llm"), key=lambda i: i.replica_id)
    assert [(i.instance_id, i.replica_id, i.url) for i in llm] == [
        (a.instance_id, 1, a.url),
        (b.instance_id, 2, b.url),
    ]
    assert llm[0].placement.zone == "us-central1-a" and llm[0].placement.use_spot
    assert llm[0].placement.accelerators == {"T4": 1.0}
    assert llm[0].placement.instance_type == "n1-standard-8"
    assert (llm[1].placement.region, llm[1].placement.use_spot) == ("europe-west4", False)
    assert llm[1].details["version"] == "3"
    [other] = await restarted.list_instances("Other.Svc")
    assert other.instance_id == c.instance_id and other.service == "Other.Svc"
    assert fake.instances[parse_instance_id(c.instance_id)]["labels"]["stratus-service"] == "other-svc"
    assert {i.instance_id for i in await restarted.list_instances()} == {
        a.instance_id,
        b.instance_id,
        c.instance_id,
    }
    [query] = [r.query["filter"][0] for r in fake.requests if r.path.endswith("/aggregated/instances")][:1]
    assert query == 'labels.stratus-service = "llm"'
    await restarted.close()


async def test_vms_without_stratus_labels_are_not_listed(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(), task())
    zone, name = parse_instance_id(inst.instance_id)
    fake.instances[(zone, "someone-elses-vm")] = {**fake.instances[(zone, name)], "name": "x", "labels": {}}
    assert [i.instance_id for i in await provider.list_instances()] == [inst.instance_id]
    await provider.close()


async def test_terminate_deletes_and_is_idempotent(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(), task())
    await provider.terminate(inst.instance_id)
    assert fake.instances == {}
    assert (await provider.status(inst.instance_id)).state == InstanceState.TERMINATED
    assert await provider.list_instances() == []
    await provider.terminate(inst.instance_id)  # already gone: GCP answers 404, which is fine
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert len(deletes) == 2
    restarted = make_provider(fake)
    assert (await restarted.status(inst.instance_id)).state == InstanceState.NOT_FOUND
    await restarted.terminate("us-east1-b/never-existed")
    await restarted.terminate("not an id at all")
    assert (await restarted.status("not an id at all")).state == InstanceState.NOT_FOUND
    await provider.close()
    await restarted.close()


async def test_terminate_waits_for_the_delete_operation(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(), task())
    await provider.terminate(inst.instance_id)
    [delete_op] = [op for op in fake.operations.values() if op["operationType"] == "delete"]
    assert delete_op["status"] == "DONE"  # observed DONE through operations.wait
    assert any(r.path.endswith(f"/operations/{delete_op['name']}/wait") for r in fake.requests)
    await provider.close()


async def test_through_the_cloud_router_as_the_provisioner_uses_it(fake: FakeCompute, tmp_path: Path) -> None:
    gcp = make_provider(fake)
    router = CloudRouter({"local": LocalProvider(tmp_path / "local"), "gcp": gcp})
    assert router.needs_bootstrap_for("gcp")
    inst = await router.launch(placement("us-central1-c"), task(replica_id=7))
    assert inst.instance_id.startswith("gcp:us-central1-c/stratus-llm-7-")
    assert (await router.status(inst.instance_id)).state == InstanceState.RUNNING
    assert [i.instance_id for i in await router.list_instances("llm")] == [inst.instance_id]
    zone, name = parse_instance_id(inst.instance_id.removeprefix("gcp:"))
    fake.preempt(zone, name)
    assert (await router.status(inst.instance_id)).state == InstanceState.PREEMPTED
    await router.terminate(inst.instance_id)
    assert (await router.status(inst.instance_id)).state == InstanceState.TERMINATED
    assert fake.instances == {}
    await router.close()


async def test_a_vm_stopping_under_a_delete_is_terminated_not_preempted_after_a_restart(
    fake: FakeCompute,
) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(use_spot=True), task())
    zone, name = parse_instance_id(inst.instance_id)
    fake.begin_delete(zone, name)  # GCP shows a deleted VM as STOPPING for a while
    restarted = make_provider(fake)  # knows nothing of the delete but what GCP records
    status = await restarted.status(inst.instance_id)
    assert status.state == InstanceState.TERMINATED and "STOPPING" in status.detail
    await provider.close()
    await restarted.close()
