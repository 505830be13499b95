"""The Azure provider's pure parts: state mapping, names and ids, request bodies, error kinds."""

from __future__ import annotations

import base64

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from libs.events.types import Placement
from services.provisioner.clouds import azure_names as names
from services.provisioner.clouds import azure_specs as specs
from services.provisioner.clouds.azure import throwaway_ssh_key
from services.provisioner.clouds.azure_config import AzureConfig
from services.provisioner.clouds.azure_errors import translate
from services.provisioner.clouds.azure_status import gone_status, vm_status
from services.provisioner.clouds.base import InstanceState
from services.provisioner.clouds.errors import (
    AuthError,
    InstanceNotFound,
    LaunchError,
    ProviderError,
    TransientError,
)

S = InstanceState


@pytest.mark.parametrize(
    ("codes", "spot", "state"),
    [
        (["ProvisioningState/creating"], True, S.PROVISIONING),
        (["ProvisioningState/creating", "PowerState/starting"], False, S.PROVISIONING),
        (["ProvisioningState/succeeded", "PowerState/running"], True, S.RUNNING),
        (["ProvisioningState/updating", "PowerState/running"], False, S.RUNNING),
        (["ProvisioningState/succeeded", "PowerState/deallocated"], True, S.PREEMPTED),
        (["ProvisioningState/succeeded", "PowerState/deallocating"], True, S.PREEMPTED),
        (["ProvisioningState/succeeded", "PowerState/deallocated"], False, S.EXITED),
        (["ProvisioningState/succeeded", "PowerState/stopped"], True, S.EXITED),
        (["ProvisioningState/failed/AllocationFailed", "PowerState/stopped"], True, S.EXITED),
        (["ProvisioningState/deleting", "PowerState/running"], False, S.TERMINATED),
        (["ProvisioningState/succeeded", "PowerState/unknown"], False, S.PROVISIONING),
        ([], False, S.PROVISIONING),
    ],
)
def test_instance_view_codes_map_to_states(codes: list[str], spot: bool, state: InstanceState) -> None:
    assert vm_status(codes, spot=spot).state == state


def test_a_failed_provisioning_names_the_error_code() -> None:
    status = vm_status(["ProvisioningState/failed/OSProvisioningTimedOut"], spot=False)
    assert "OSProvisioningTimedOut" in status.detail


@pytest.mark.parametrize(
    ("nic_left", "spot", "state"),
    [
        (True, True, S.PREEMPTED),
        (True, False, S.EXITED),
        (False, True, S.NOT_FOUND),
        (False, False, S.NOT_FOUND),
    ],
)
def test_a_vanished_vm_is_an_eviction_only_when_spot_and_its_nic_remains(
    nic_left: bool, spot: bool, state: InstanceState
) -> None:
    assert gone_status(nic_left=nic_left, spot=spot).state == state


def test_vm_names_fit_azure_rules_and_ids_round_trip() -> None:
    name = names.vm_name("My_Service.with a very long name " * 3, 12)
    assert len(name) <= names.MAX_VM_NAME and name.startswith("stratus-my-service-with-a-very")
    assert name.rsplit("-", 2)[1] == "12" and name.replace("-", "").isalnum()
    assert names.vm_name("svc", 1) != names.vm_name("svc", 1)  # a relaunch gets a new name
    assert names.parse_instance_id(names.instance_id("stratus-eastus", name)) == ("stratus-eastus", name)
    for bad in ("", "no-slash", "group/UPPER", "group/", "/vm", "a/b/c"):
        with pytest.raises(InstanceNotFound):
            names.parse_instance_id(bad)


def test_tags_carry_what_rediscovery_needs_and_round_trip_accelerators() -> None:
    tags = names.tags(
        service="llm", replica_id=3, version=2, spot=True, url="http://20.0.0.1:8080", price=1.5,
        accelerators={"A100": 1, "T4": 0.5}, vm="stratus-llm-3-abcdef",
    )  # fmt: skip
    assert names.is_stratus(tags, "llm") and not names.is_stratus(tags, "other") and not names.is_stratus({})
    assert names.parse_accelerators(tags[names.TAG_ACCELERATORS]) == {"A100": 1, "T4": 0.5}
    assert all(len(v) <= 256 for v in tags.values())  # Azure's tag value limit


def test_image_references() -> None:
    gpu = specs.image_reference(None, gpu=True)
    assert (gpu.publisher, gpu.offer, gpu.sku, gpu.version) == (
        "microsoft-dsvm",
        "ubuntu-hpc",
        "2204",
        "latest",
    )
    assert specs.image_reference(None, gpu=False).offer == "0001-com-ubuntu-server-jammy"
    for gen1 in ("Standard_NC6", "Standard_NC24r_Promo", "Standard_NV12"):  # cannot boot a Gen2 image
        assert specs.image_reference(None, gpu=True, vm_size=gen1).sku == "22_04-lts"
    assert specs.image_reference(None, gpu=True, vm_size="Standard_NC6s_v3").offer == "ubuntu-hpc"
    gallery = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/x/images/y/versions/1.0.0"
    )
    assert specs.image_reference(gallery, gpu=True).id == gallery
    with pytest.raises(LaunchError, match="neither a URN"):
        specs.image_reference("Canonical:ubuntu::latest", gpu=False)


def test_custom_data_is_base64_and_bounded() -> None:
    assert base64.b64decode(specs.custom_data("#!/bin/bash\necho hi\n")) == b"#!/bin/bash\necho hi\n"
    with pytest.raises(LaunchError, match="custom data limit"):
        specs.custom_data("x" * 65_536)
    assert len(specs.custom_data("x" * 65_535)) == 87_380  # the limit is on the decoded bytes


def test_ports_and_the_deny_rule() -> None:
    assert specs.open_ports(8080, 8181, [8080, 22]) == [22, 8080, 8181]
    with pytest.raises(LaunchError, match="not TCP ports"):
        specs.open_ports(8080, 8181, [70000])
    nsg = specs.security_group("eastus", [8080], ["203.0.113.7/32"], {})
    assert nsg.properties is not None
    rules = [r.properties for r in nsg.properties.security_rules or [] if r.properties is not None]
    assert [(r.access, r.destination_port_range) for r in rules] == [("Allow", "8080"), ("Deny", "*")]


def test_on_demand_vm_has_no_spot_fields() -> None:
    config = AzureConfig(source_ranges=("203.0.113.7/32",))
    image = specs.image_reference(None, gpu=False)
    kwargs = dict(
        name="vm", disk="vm-osdisk", nic_id="/nic", image=image, custom_data_b64="", disk_size_gb=64,
        config=config, ssh_public_key="ssh-rsa AAAA", tags={},
    )  # fmt: skip
    regular = specs.virtual_machine(
        Placement(cloud="azure", region="eastus", instance_type="Standard_D4s_v5"), **kwargs
    )
    assert regular.properties is not None
    assert (regular.properties.priority, regular.properties.eviction_policy) == ("Regular", None)
    assert regular.zones is None
    zonal = specs.virtual_machine(
        Placement(cloud="azure", region="eastus", zone="2", instance_type="Standard_D4s_v5"), **kwargs
    )
    assert zonal.zones == ["2"]
    with pytest.raises(LaunchError, match="instance_type"):
        specs.virtual_machine(Placement(cloud="azure", region="eastus"), **kwargs)


def test_config_rejects_bad_ranges() -> None:
    with pytest.raises(LaunchError, match=r"'10\.0\.0\.300/8' is not an address range"):
        AzureConfig(source_ranges=("10.0.0.300/8",))
    assert AzureConfig(address="private").ingress_ranges() == ("10.100.0.0/16",)
    with pytest.raises(LaunchError, match="no ingress range"):
        AzureConfig().ingress_ranges()


def test_sdk_failures_without_an_http_answer() -> None:
    assert isinstance(translate(ClientAuthenticationError("no credential"), "x"), AuthError)
    assert isinstance(translate(ServiceRequestError("refused"), "x"), TransientError)
    assert isinstance(translate(ServiceResponseError("reset"), "x"), TransientError)
    assert isinstance(translate(HttpResponseError("no body"), "x"), LaunchError)
    assert isinstance(translate(RuntimeError("bug"), "x"), LaunchError)
    same = TransientError("already ours")
    assert translate(same, "x") is same
    assert all(isinstance(translate(e, "x"), ProviderError) for e in (ValueError(), KeyError()))


def test_throwaway_ssh_key_is_openssh_rsa() -> None:
    key = throwaway_ssh_key()
    assert key.startswith("ssh-rsa AAAA") and key.endswith(" stratus-throwaway")
