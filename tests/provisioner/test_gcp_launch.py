"""GCP launches through the real google-cloud-compute client against a fake Compute REST API."""

from __future__ import annotations

import pytest

from libs.events.types import Placement
from services.provisioner.clouds import gcp_request
from services.provisioner.clouds.base import InstanceState
from services.provisioner.clouds.errors import LaunchError
from tests.fakes.gcp_server import FakeCompute

from .gcp_fixtures import (
    ROUTER_RANGE,
    SECRET,
    everything_sent,
    fake,
    inserted,
    make_provider,
    metadata,
    placement,
    task,
)

__all__ = ["fake"]


async def test_spot_launch_on_n1_attaches_gpus_and_asks_for_spot(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    inst = await provider.launch(placement(), task(replica_id=3))
    [body] = inserted(fake)
    assert body["machineType"] == "zones/us-central1-a/machineTypes/n1-standard-8"
    assert body["scheduling"] == {
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "STOP",
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
    }
    assert body["guestAccelerators"] == [
        {"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}
    ]
    assert body["labels"] == {"stratus-service": "llm", "stratus-replica-id": "3", "stratus-version": "1"}
    assert body["tags"] == {"items": ["stratus-llm"]}
    assert body["disks"][0]["initializeParams"]["sourceImage"] == gcp_request.GPU_IMAGE
    [nic] = body["networkInterfaces"]
    assert nic["accessConfigs"] == [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]
    assert inst.instance_id == f"us-central1-a/{body['name']}"
    assert body["name"].startswith("stratus-llm-3-")
    assert inst.url.startswith("http://203.0.113.") and inst.url.endswith(":8080")
    assert inst.details["log_url"] == inst.url.replace(":8080", ":8181")
    assert (inst.service, inst.replica_id, inst.placement.use_spot) == ("llm", 3, True)
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING
    await provider.close()


async def test_startup_script_carries_public_envs_but_no_secret(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    await provider.launch(placement(), task())
    [body] = inserted(fake)
    script = metadata(body)["startup-script"]
    assert script.startswith("#!/bin/bash")
    assert "MODEL_NAME" in script and "mistral-7b" in script
    assert "pip install vllm" in script and "boot-token-1" in script
    assert SECRET not in everything_sent(fake)
    assert metadata(body)["stratus-service"] == "llm"
    await provider.close()


async def test_on_demand_gpu_machine_type_brings_its_own_gpus(fake: FakeCompute) -> None:
    provider = make_provider(fake, address="private")
    where = placement("europe-west4-b", "a2-highgpu-1g", accelerators={"A100": 1.0}, use_spot=False)
    custom = "projects/my-project/global/images/my-vllm-image"
    inst = await provider.launch(where, task(image_id={"europe-west4": custom}, disk_size=300))
    [body] = inserted(fake)
    assert body["scheduling"] == {
        "provisioningModel": "STANDARD",
        "automaticRestart": True,
        "onHostMaintenance": "TERMINATE",
    }
    assert "guestAccelerators" not in body
    assert body["disks"][0]["initializeParams"] == {"sourceImage": custom, "diskSizeGb": "300"}
    assert "accessConfigs" not in body["networkInterfaces"][0]  # internal: no public IP at all
    assert inst.url.startswith("http://10.128.0.") and inst.placement.use_spot is False
    await provider.close()


async def test_cpu_only_launch_uses_a_plain_image_and_may_migrate(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    await provider.launch(placement("us-east1-b", "n2-standard-4", accelerators={}, use_spot=False), task())
    [body] = inserted(fake)
    assert body["disks"][0]["initializeParams"]["sourceImage"] == gcp_request.CPU_IMAGE
    assert body["scheduling"]["onHostMaintenance"] == "MIGRATE"
    assert "install-nvidia-driver" not in metadata(body)
    await provider.close()


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (placement("us-central1-a", "n2-standard-8", accelerators={"T4": 1.0}), "cannot take attached GPUs"),
        (placement("us-central1-a", "n1-standard-8", accelerators={"H100": 1.0}), "cannot be attached"),
        (placement("us-central1-a", "n1-standard-8", accelerators={"T4": 0.5}), "whole number"),
        (placement("us-central1-a", "n1-standard-8", region="us-east1"), "needs a zone of region"),
        (placement("us-central1-a", ""), "no instance_type"),
    ],
)
async def test_bad_placements_fail_before_any_cloud_call(
    fake: FakeCompute, where: Placement, message: str
) -> None:
    provider = make_provider(fake)
    with pytest.raises(LaunchError, match=message):
        await provider.launch(where, task())
    assert inserted(fake) == []
    await provider.close()


async def test_firewall_opens_only_service_log_and_asked_ports_to_the_router(fake: FakeCompute) -> None:
    provider = make_provider(fake)
    await provider.launch(placement(), task(ports=[9000]))
    await provider.launch(placement("us-central1-b"), task(replica_id=2, ports=[9000]))
    [rule] = fake.bodies("POST", r"/global/firewalls$")
    assert rule["sourceRanges"] == [ROUTER_RANGE]
    assert rule["targetTags"] == ["stratus-llm"]
    assert rule["direction"] == "INGRESS"
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["8080", "8181", "9000"]}]
    assert fake.bodies("PATCH", r"/global/firewalls/") == []  # the second launch found it as wanted
    # A new version asking for another port widens the rule; the old ports stay for old replicas.
    await provider.launch(placement(), task(replica_id=3, version=2, ports=[9100]))
    [patch] = fake.bodies("PATCH", r"/global/firewalls/stratus-llm-in$")
    assert patch["allowed"] == [{"IPProtocol": "tcp", "ports": ["8080", "8181", "9000", "9100"]}]
    assert fake.firewalls["stratus-llm-in"]["sourceRanges"] == [ROUTER_RANGE]
    await provider.close()
