"""The CloudRouter dispatches by cloud and instance id; the credential checks summarize into the
CloudsChecked the API serves (pure parts, as tables)."""

from __future__ import annotations

import pytest

from libs.events.types import Placement
from services.provisioner.clouds.base import (
    CloudCheck,
    Instance,
    InstanceState,
    InstanceStatus,
    LaunchTask,
    Provider,
)
from services.provisioner.clouds.check import check_clouds, same_answer, summarize
from services.provisioner.clouds.errors import AuthError, LaunchError, TransientError
from services.provisioner.clouds.registry import CloudRouter, load_provider, split_id


class Recording(Provider):
    """A provider that keeps its instances in a dict and records the calls it gets."""

    def __init__(self, cloud: str, *, bootstrap: bool = False) -> None:
        self.cloud = cloud  # type: ignore[misc]
        self.needs_bootstrap = bootstrap  # type: ignore[misc]
        self.instances: dict[str, Instance] = {}
        self.calls: list[tuple[str, str]] = []

    async def launch(self, placement: Placement, task: LaunchTask) -> Instance:
        own = f"{placement.region}/vm-{task.replica_id}"
        inst = Instance(instance_id=own, service=task.service, replica_id=task.replica_id,
                        url="http://10.0.0.1:8080", placement=placement)  # fmt: skip
        self.instances[own] = inst
        self.calls.append(("launch", own))
        return inst

    async def terminate(self, instance_id: str, *, grace_seconds: float = 10) -> None:
        self.calls.append(("terminate", instance_id))
        self.instances.pop(instance_id, None)

    async def status(self, instance_id: str) -> InstanceStatus:
        self.calls.append(("status", instance_id))
        found = instance_id in self.instances
        return InstanceStatus(state=InstanceState.RUNNING if found else InstanceState.NOT_FOUND)

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return [i for i in self.instances.values() if service in (None, i.service)]


def task(replica_id: int = 1) -> LaunchTask:
    return LaunchTask(service="svc", replica_id=replica_id, service_port=8080, run="serve")


async def test_launch_goes_to_the_placements_cloud_and_ids_find_their_way_back() -> None:
    local, aws = Recording("local"), Recording("aws", bootstrap=True)
    router = CloudRouter({"local": local, "aws": aws}, disabled={})
    on_aws = await router.launch(Placement(cloud="aws", region="us-east-1"), task(1))
    on_local = await router.launch(Placement(), task(2))
    assert on_aws.instance_id == "aws:us-east-1/vm-1" and on_local.instance_id == "local/vm-2"
    assert (await router.status(on_aws.instance_id)).state == InstanceState.RUNNING
    assert aws.calls[-1] == ("status", "us-east-1/vm-1")
    await router.terminate(on_local.instance_id)
    assert local.calls[-1] == ("terminate", "local/vm-2")
    assert {i.instance_id for i in await router.list_instances("svc")} == {"aws:us-east-1/vm-1"}
    assert router.needs_bootstrap_for("aws") and not router.needs_bootstrap_for("local")
    assert not router.needs_bootstrap_for("gcp")


async def test_clouds_without_a_provider_fail_as_what_they_are() -> None:
    router = CloudRouter({"local": Recording("local")})
    with pytest.raises(TransientError, match="not checked its credentials yet"):
        await router.launch(Placement(cloud="gcp", region="us-central1"), task())
    router.disabled = {"gcp": "no Google credentials. To fix: gcloud auth application-default login"}
    with pytest.raises(AuthError, match="gcloud auth application-default login"):
        await router.launch(Placement(cloud="gcp", region="us-central1"), task())
    with pytest.raises(LaunchError, match="unknown cloud 'ibm'"):
        await router.launch(Placement(cloud="ibm", region="x"), task())
    # An instance of a cloud this provisioner cannot reach is not reported gone.
    status = await router.status("gcp:us-central1-a/vm-1")
    assert status.state == InstanceState.RUNNING and "not enabled" in status.detail
    with pytest.raises(LaunchError):
        await router.terminate("gcp:us-central1-a/vm-1")


@pytest.mark.parametrize(
    ("instance_id", "expected"),
    [
        ("aws:us-east-1/i-1", ("aws", "us-east-1/i-1")),
        ("gcp:zone/vm", ("gcp", "zone/vm")),
        ("svc-1-abcdef", ("local", "svc-1-abcdef")),
        ("local:x", ("local", "local:x")),
        ("weird:thing", ("local", "weird:thing")),
    ],
)
def test_split_id(instance_id: str, expected: tuple[str, str]) -> None:
    assert split_id(instance_id, {"aws", "gcp", "azure", "local"}) == expected


def test_unknown_clouds_do_not_load() -> None:
    from libs.runtime.settings import Settings

    with pytest.raises(LaunchError, match="unknown cloud 'ibm'"):
        load_provider("ibm", Settings())


async def test_checks_honour_allowed_clouds_and_summarize_with_what_to_do() -> None:
    async def ok() -> CloudCheck:
        return CloudCheck(cloud="aws", enabled=True, reason="account 1")

    async def no_gcp() -> CloudCheck:
        return CloudCheck(cloud="gcp", enabled=False, reason="no Google credentials.", hint="run gcloud auth")

    checks = await check_clouds(["aws", "gcp"], {"aws": ok, "gcp": no_gcp})
    assert [(c.cloud, c.enabled) for c in checks] == [("aws", True), ("gcp", False), ("azure", False)]
    assert "not in allowed_clouds ['aws', 'gcp']" in checks[2].reason
    answer = summarize(checks, ["gcp", "aws"])
    assert answer.enabled == ["aws"] and answer.allowed == ["aws", "gcp"] and answer.service == ""
    assert answer.disabled["gcp"] == "no Google credentials. To fix: run gcloud auth"
    assert answer.disabled["azure"].endswith("To fix: add it to allowed_clouds in $STRATUS_HOME/config.yaml")
    assert same_answer(answer, summarize(checks, ["aws", "gcp"], provisioner_id="other"))
    assert not same_answer(None, answer)
    assert not same_answer(answer, summarize(checks[:1], ["aws", "gcp"]))


async def test_what_the_vm_says_overrides_a_running_cloud_state_only() -> None:
    local, aws = Recording("local"), Recording("aws", bootstrap=True)
    router = CloudRouter({"local": local, "aws": aws}, disabled={})
    inst = await router.launch(Placement(cloud="aws", region="us-east-1"), task(1))
    exited = InstanceStatus(state=InstanceState.EXITED, exit_code=3, detail="the VM's workload exited (3)")
    router.workload_status = lambda instance_id: exited if instance_id == inst.instance_id else None
    assert await router.status(inst.instance_id) == exited
    await router.terminate(inst.instance_id)
    assert (await router.status(inst.instance_id)).state == InstanceState.NOT_FOUND
