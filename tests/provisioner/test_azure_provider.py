"""The Azure provider through the real azure-mgmt SDK clients against a fake ARM over TLS.

Only the transport is faked (``tests.fakes.azure_server``): requests go through azure-core's
pipeline (bearer token, retries, long-running-operation polling) to HTTPS on loopback, and the
assertions read what the fake received.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.events.types import Placement
from libs.runtime.settings import Settings
from services.provisioner.clouds.azure import AzureProvider
from services.provisioner.clouds.azure_config import AzureConfig
from services.provisioner.clouds.base import Bootstrap, InstanceState, LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.registry import load_provider
from tests.fakes.azure_server import FakeArm, StaticCredential, running_fake_arm

SUB = "00000000-0000-0000-0000-00000000abcd"
ROUTER = "203.0.113.0/24"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly stratus-test"
SECRET = "hf_secret_value_123"
A100 = Placement(
    cloud="azure", region="eastus", instance_type="Standard_NC24ads_A100_v4", accelerators={"A100": 1},
    use_spot=True, price_per_hour=1.23,
)  # fmt: skip
MakeProvider = Callable[..., AzureProvider]


def make_task(**overrides: Any) -> LaunchTask:
    fields: dict[str, Any] = {
        "service": "llm", "replica_id": 1, "version": 3, "service_port": 8080, "setup": "pip list",
        "run": "python3 -m http.server 8080", "envs": {"HF_TOKEN": SECRET, "MODEL": "mistral-7b"},
        "secret_names": ["HF_TOKEN"], "ports": [9000], "num_gpus": 1,
        "bootstrap": Bootstrap(url="https://api.example.test/v1/bootstrap", token="one-time-token-1"),
    }  # fmt: skip
    fields.update(overrides)
    return LaunchTask(**fields)


@pytest.fixture
def arm(tmp_path: Path) -> Iterator[FakeArm]:
    with running_fake_arm(tmp_path) as fake:
        yield fake
    assert not fake.bugs, fake.bugs


@pytest.fixture
async def make_provider(arm: FakeArm) -> AsyncIterator[MakeProvider]:
    made: list[AzureProvider] = []

    def make(credential: Any = None, **config: Any) -> AzureProvider:
        settings: dict[str, Any] = {
            "source_ranges": (ROUTER,), "ssh_public_key": SSH_KEY, "poll_interval_s": 0.01, "retry_total": 0,
            "operation_timeout_s": 20.0,
        }  # fmt: skip
        settings.update(config)
        provider = AzureProvider(
            SUB, credential or StaticCredential(), config=AzureConfig(**settings), base_url=arm.base_url,
            connection_verify=arm.ca_path,
        )  # fmt: skip
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def vm_body(arm: FakeArm) -> dict[str, Any]:
    puts = arm.received("PUT", "virtualMachines")
    assert len(puts) == 1, [p.path for p in puts]
    body: dict[str, Any] = puts[0].body
    return body


def resources_of_vm(arm: FakeArm, vm: str) -> list[str]:
    return sorted(key for key in arm.resources if vm in key)


async def test_spot_launch_sends_priority_size_tags_custom_data_and_firewall(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, make_task())

    body = vm_body(arm)
    props = body["properties"]
    assert body["location"] == "eastus"
    assert props["hardwareProfile"]["vmSize"] == "Standard_NC24ads_A100_v4"
    assert props["priority"] == "Spot"
    assert props["evictionPolicy"] == "Delete"
    assert props["billingProfile"]["maxPrice"] == -1
    assert props["storageProfile"]["imageReference"] == {
        "publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest",
    }  # fmt: skip
    tags = body["tags"]
    assert (tags["stratus-service"], tags["stratus-replica-id"], tags["stratus-version"]) == ("llm", "1", "3")
    script = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert script.startswith("#!/bin/bash")
    assert "mistral-7b" in script and "one-time-token-1" in script
    assert SECRET not in script
    assert all(SECRET not in str(r.body) for r in arm.requests)  # nowhere in any request to Azure
    # The NIC stays when Azure evicts the VM (how status recognises an eviction).
    nic_ref = props["networkProfile"]["networkInterfaces"][0]
    assert nic_ref["properties"]["deleteOption"] == "Detach"

    (nsg,) = arm.received("PUT", "networkSecurityGroups")
    rules = nsg.body["properties"]["securityRules"]
    allows = [r["properties"] for r in rules if r["properties"]["access"] == "Allow"]
    assert sorted(int(r["destinationPortRange"]) for r in allows) == [8080, 8181, 9000]
    assert all(r["sourceAddressPrefixes"] == [ROUTER] and r["direction"] == "Inbound" for r in allows)
    (deny,) = [r["properties"] for r in rules if r["properties"]["access"] == "Deny"]
    assert (deny["sourceAddressPrefix"], deny["destinationPortRange"], deny["priority"]) == ("*", "*", 4096)

    (ip,) = arm.of_type("Microsoft.Network/publicIPAddresses")
    assert inst.url == f"http://{ip['properties']['ipAddress']}:8080"
    assert inst.instance_id.startswith("stratus-eastus/stratus-llm-1-")
    assert inst.placement == A100
    assert (await provider.status(inst.instance_id)).state == InstanceState.RUNNING


async def test_on_demand_launch_with_private_address_and_image_override(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider(address="private")
    placement = Placement(cloud="azure", region="westeurope", instance_type="Standard_D4s_v5")
    image = {"westeurope": "Canonical:ubuntu-24_04-lts:server:latest"}
    inst = await provider.launch(placement, make_task(image_id=image, num_gpus=0, disk_size=64))

    props = vm_body(arm)["properties"]
    assert props["priority"] == "Regular"
    assert "evictionPolicy" not in props and "billingProfile" not in props
    assert props["storageProfile"]["imageReference"]["offer"] == "ubuntu-24_04-lts"
    assert props["storageProfile"]["osDisk"]["diskSizeGB"] == 64
    assert arm.received("PUT", "publicIPAddresses") == []
    (nic,) = arm.of_type("Microsoft.Network/networkInterfaces")
    private = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
    assert inst.url == f"http://{private}:8080"
    # The region's resource group is created in that region.
    (group,) = [r.body for r in arm.received("PUT", "resourcegroups")]
    assert group["location"] == "westeurope"


async def test_concurrent_launches_in_a_region_share_one_resource_group_and_vnet(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    launched = await asyncio.gather(*(provider.launch(A100, make_task(replica_id=i)) for i in range(1, 4)))
    assert len({i.instance_id for i in launched}) == 3 and len({i.url for i in launched}) == 3
    assert len(arm.received("PUT", "resourcegroups")) == 1
    assert len(arm.received("PUT", "virtualNetworks")) == 1
    assert len(arm.received("PUT", "virtualMachines")) == 3


async def test_list_instances_rediscovers_replicas_by_tags_after_a_restart(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    first = make_provider()
    a = await first.launch(A100, make_task())
    b = await first.launch(A100, make_task(service="other", replica_id=7))
    restarted = make_provider()

    found = await restarted.list_instances()
    assert [(i.instance_id, i.url, i.service, i.replica_id) for i in found] == sorted(
        [(a.instance_id, a.url, "llm", 1), (b.instance_id, b.url, "other", 7)], key=lambda t: (t[2], t[3])
    )
    (llm,) = await restarted.list_instances("llm")
    assert llm.placement == A100  # size, region, spot and price from the VM and its tags
    assert llm.details["log_url"] == a.details["log_url"] == a.url.replace(":8080", ":8181")
    await restarted.terminate(a.instance_id)
    assert [i.instance_id for i in await restarted.list_instances()] == [b.instance_id]


async def test_spot_eviction_is_preempted_and_terminate_cleans_what_is_left(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, make_task())
    group, vm = inst.instance_id.split("/")
    arm.evict(f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{vm}")

    status = await provider.status(inst.instance_id)
    assert status.state == InstanceState.PREEMPTED, status
    assert "evicted" in status.detail
    assert resources_of_vm(arm, vm)  # the NIC, IP and NSG are still there
    await provider.terminate(inst.instance_id)
    assert resources_of_vm(arm, vm) == []
    assert (await provider.status(inst.instance_id)).state == InstanceState.NOT_FOUND


async def test_debug_preempt_asks_azure_to_evict_the_spot_vm(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    spot = await provider.launch(A100, make_task())
    regular = await provider.launch(
        Placement(cloud="azure", region="eastus", instance_type="Standard_NC24ads_A100_v4"),
        make_task(replica_id=2),
    )
    with pytest.raises(LaunchError, match="not a spot VM"):
        await provider.preempt(regular.instance_id)
    await provider.preempt(spot.instance_id)
    (post,) = [r for r in arm.requests if r.method == "POST"]
    assert post.path.endswith(f"/virtualMachines/{spot.instance_id.split('/')[1]}/simulateEviction")
    assert (await provider.status(spot.instance_id)).state == InstanceState.PREEMPTED
    assert (await provider.status(regular.instance_id)).state == InstanceState.RUNNING


async def test_power_states_map_to_instance_states(arm: FakeArm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    spot = await provider.launch(A100, make_task())
    regular = await provider.launch(
        Placement(cloud="azure", region="eastus", instance_type="Standard_NC24ads_A100_v4"),
        make_task(replica_id=2),
    )

    def vm_id(instance_id: str) -> str:
        group, vm = instance_id.split("/")
        return f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{vm}"

    arm.set_power_state(vm_id(spot.instance_id), "PowerState/deallocated")  # eviction policy Deallocate
    arm.set_power_state(vm_id(regular.instance_id), "PowerState/stopped")
    assert (await provider.status(spot.instance_id)).state == InstanceState.PREEMPTED
    assert (await provider.status(regular.instance_id)).state == InstanceState.EXITED
    arm.evict(vm_id(regular.instance_id))  # an on-demand VM deleted outside Stratus is no eviction
    assert (await provider.status(regular.instance_id)).state == InstanceState.EXITED


async def test_terminate_is_idempotent_and_removes_every_resource_of_the_vm(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    provider = make_provider()
    inst = await provider.launch(A100, make_task())
    vm = inst.instance_id.split("/")[1]
    assert len(resources_of_vm(arm, vm)) == 5  # VM, NIC, public IP, NSG, OS disk
    await provider.terminate(inst.instance_id)
    assert resources_of_vm(arm, vm) == []
    await provider.terminate(inst.instance_id)
    await provider.terminate("stratus-nowhere/stratus-ghost-1-abcdef")  # its resource group does not exist
    await provider.terminate("not an azure id")
    assert (await provider.status("not an azure id")).state == InstanceState.NOT_FOUND
    assert (await provider.status(inst.instance_id)).state == InstanceState.NOT_FOUND
    assert arm.of_type("Microsoft.Network/virtualNetworks")  # the region's shared VNet stays


async def test_bad_image_id_fails_before_creating_anything(arm: FakeArm, make_provider: MakeProvider) -> None:
    provider = make_provider()
    with pytest.raises(LaunchError, match="neither a URN"):
        await provider.launch(A100, make_task(image_id="ubuntu-latest"))
    assert arm.requests == []


async def test_public_vms_need_an_ingress_range_private_ones_default_to_the_vnet(
    arm: FakeArm, make_provider: MakeProvider
) -> None:
    with pytest.raises(LaunchError, match="STRATUS_CLOUD_INGRESS_CIDR"):
        await make_provider(source_ranges=()).launch(A100, make_task())
    assert arm.requests == []
    await make_provider(source_ranges=(), address="private").launch(A100, make_task())
    (nsg,) = arm.received("PUT", "networkSecurityGroups")
    allows = [
        r["properties"]
        for r in nsg.body["properties"]["securityRules"]
        if r["properties"]["access"] == "Allow"
    ]
    assert {tuple(r["sourceAddressPrefixes"]) for r in allows} == {("10.100.0.0/16",)}


def test_config_from_settings_reads_the_cloud_knobs() -> None:
    settings = Settings.from_env(
        {"STRATUS_CLOUD_ADDRESS": "private", "STRATUS_CLOUD_INGRESS_CIDR": "203.0.113.7/32, 10.0.0.0/8",
         "STRATUS_CLOUD_LOG_PORT": "9191"}
    )  # fmt: skip
    config = AzureConfig.from_settings(settings)
    assert (config.address, config.source_ranges, config.log_port) == (
        "private", ("203.0.113.7/32", "10.0.0.0/8"), 9191,
    )  # fmt: skip
    with pytest.raises(LaunchError, match="'nowhere' is not an address range"):
        AzureConfig.from_settings(Settings.from_env({"STRATUS_CLOUD_INGRESS_CIDR": "nowhere"}))


async def test_the_registry_builds_it_from_settings_and_the_subscription_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    with pytest.raises(LaunchError, match="AZURE_SUBSCRIPTION_ID is not set"):
        load_provider("azure", Settings(cloud_ingress_cidr="203.0.113.7/32"))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    provider = load_provider("azure", Settings(cloud_ingress_cidr="203.0.113.7/32", cloud_log_port=9191))
    assert isinstance(provider, AzureProvider) and provider.needs_bootstrap
    assert (provider.subscription_id, provider.config.source_ranges, provider.config.log_port) == (
        SUB, ("203.0.113.7/32",), 9191,
    )  # fmt: skip
    await provider.close()
    with pytest.raises(LaunchError, match="STRATUS_CLOUD_INGRESS_CIDR"):
        load_provider("azure", Settings(cloud_ingress_cidr="not-a-range"))


async def test_check_reports_a_usable_subscription(arm: FakeArm, make_provider: MakeProvider) -> None:
    check = await make_provider().check()
    assert check.enabled, check
    assert SUB in check.reason
