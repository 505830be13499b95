"""The ARM request bodies of a launch, as SDK models (pure).

Default images (``image_id`` in resources overrides them, per region if it is a mapping):

- with accelerators: ``microsoft-dsvm:ubuntu-hpc:2204:latest``, Microsoft's Ubuntu 22.04 HPC/AI
  image with the NVIDIA driver, CUDA and NCCL preinstalled (free, no marketplace plan, Gen2: the
  A100/H100/T4/A10 sizes are all Gen2);
- without: ``Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest``;
- for the Generation-1-only sizes (NC and NV v1: K80, M60; the catalog's ``Generation`` V1, and
  retired by Azure in 2023), which cannot boot a Gen2 image: Canonical's Gen1 Ubuntu 22.04, with no
  NVIDIA driver (its setup must install one).

``image_id`` is a URN ``publisher:offer:sku:version`` (as ``az vm create --image`` takes) or an
ARM resource id of a managed image or gallery image version (``/subscriptions/...``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

from azure.mgmt.compute import models as cm
from azure.mgmt.network import models as nm

from libs.events.types import Placement

from .azure_config import AzureConfig
from .errors import LaunchError

GPU_IMAGE = "microsoft-dsvm:ubuntu-hpc:2204:latest"
CPU_IMAGE = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"
GEN1_IMAGE = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts:latest"
_GEN1_ONLY = re.compile(r"Standard_N[CV](6|12|24|24r)(_Promo)?\Z", re.IGNORECASE)
# Azure rejects custom data whose decoded bytes exceed this ("the maximum length of the binary
# array is 65535 bytes"; the request carries it base64-encoded).
CUSTOM_DATA_LIMIT = 65535
FIRST_RULE_PRIORITY = 100
DENY_PRIORITY = 4096  # the last user priority: shadows AllowVnetInBound/AllowAzureLoadBalancerInBound


def default_image(vm_size: str, *, gpu: bool) -> str:
    if _GEN1_ONLY.match(vm_size):
        return GEN1_IMAGE
    return GPU_IMAGE if gpu else CPU_IMAGE


def image_reference(image: str | None, *, gpu: bool, vm_size: str = "") -> cm.ImageReference:
    """The image a VM boots: ``image`` (URN or resource id) or the default for the size and ``gpu``."""
    text = image or default_image(vm_size, gpu=gpu)
    if text.startswith("/"):
        return cm.ImageReference(id=text)
    parts = text.split(":")
    if len(parts) != 4 or not all(parts):
        raise LaunchError(
            f"azure image_id {text!r} is neither a URN publisher:offer:sku:version nor a resource id "
            "(/subscriptions/.../images/... or .../galleries/.../versions/...)"
        )
    publisher, offer, sku, version = parts
    return cm.ImageReference(publisher=publisher, offer=offer, sku=sku, version=version)


def custom_data(script: str) -> str:
    """The startup script as custom data (base64), checked against Azure's limit."""
    raw = script.encode()
    if len(raw) > CUSTOM_DATA_LIMIT:
        raise LaunchError(
            f"the startup script is {len(raw)} bytes, over Azure's custom data limit of {CUSTOM_DATA_LIMIT}: "
            "carry less inline (a smaller workdir/file_mounts, or fetch data in setup)"
        )
    return base64.b64encode(raw).decode()


def open_ports(service_port: int, log_port: int, extra: Sequence[int]) -> list[int]:
    """The inbound TCP ports: the service's, the log server's, and the ones the task asks for."""
    ports = sorted({service_port, log_port, *extra})
    bad = [p for p in ports if not 1 <= p <= 65535]
    if bad:
        raise LaunchError(f"ports {bad} are not TCP ports (1-65535)")
    return ports


def security_group(
    location: str,
    ports: Sequence[int],
    sources: Sequence[str],
    tags: dict[str, str],
    *,
    peers: Sequence[str] = (),
) -> nm.NetworkSecurityGroup:
    """Allow ``ports`` from ``sources`` only, and everything from ``peers`` (a multi-node replica's
    nodes, which share the NSG); deny every other inbound, VNet traffic included."""
    rules = [
        nm.SecurityRule(
            name=f"stratus-allow-{port}",
            properties=nm.SecurityRulePropertiesFormat(
                protocol="Tcp",
                direction="Inbound",
                access="Allow",
                priority=FIRST_RULE_PRIORITY + i,
                source_address_prefixes=list(sources),
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range=str(port),
            ),
        )
        for i, port in enumerate(ports)
    ]
    if peers:
        rules.append(
            nm.SecurityRule(
                name="stratus-allow-nodes",
                properties=nm.SecurityRulePropertiesFormat(
                    protocol="*",
                    direction="Inbound",
                    access="Allow",
                    priority=FIRST_RULE_PRIORITY + len(rules),
                    source_address_prefixes=[f"{ip}/32" for ip in peers],
                    source_port_range="*",
                    destination_address_prefix="*",
                    destination_port_range="*",
                ),
            )
        )
    rules.append(
        nm.SecurityRule(
            name="stratus-deny-other-inbound",
            properties=nm.SecurityRulePropertiesFormat(
                protocol="*",
                direction="Inbound",
                access="Deny",
                priority=DENY_PRIORITY,
                source_address_prefix="*",
                source_port_range="*",
                destination_address_prefix="*",
                destination_port_range="*",
            ),
        )
    )
    return nm.NetworkSecurityGroup(
        location=location, tags=tags, properties=nm.NetworkSecurityGroupPropertiesFormat(security_rules=rules)
    )


def virtual_network(location: str, config: AzureConfig) -> nm.VirtualNetwork:
    return nm.VirtualNetwork(
        location=location,
        properties=nm.VirtualNetworkPropertiesFormat(
            address_space=nm.AddressSpace(address_prefixes=[config.vnet_prefix]),
            subnets=[subnet(config)],
        ),
    )


def subnet(config: AzureConfig) -> nm.Subnet:
    return nm.Subnet(
        name=config.subnet_name, properties=nm.SubnetPropertiesFormat(address_prefix=config.subnet_prefix)
    )


def public_ip(location: str, tags: dict[str, str]) -> nm.PublicIPAddress:
    return nm.PublicIPAddress(
        location=location,
        tags=tags,
        sku=nm.PublicIPAddressSku(name="Standard"),
        properties=nm.PublicIPAddressPropertiesFormat(public_ip_allocation_method="Static"),
    )


def network_interface(
    location: str, *, subnet_id: str, nsg_id: str, ip_id: str | None, tags: dict[str, str]
) -> nm.NetworkInterface:
    config = nm.NetworkInterfaceIPConfiguration(
        name="ipconfig1",
        properties=nm.NetworkInterfaceIPConfigurationPropertiesFormat(
            primary=True,
            private_ip_allocation_method="Dynamic",
            subnet=nm.Subnet(id=subnet_id),
            public_ip_address=nm.PublicIPAddress(id=ip_id) if ip_id else None,
        ),
    )
    return nm.NetworkInterface(
        location=location,
        tags=tags,
        properties=nm.NetworkInterfacePropertiesFormat(
            ip_configurations=[config],
            network_security_group=nm.NetworkSecurityGroup(id=nsg_id),
        ),
    )


def virtual_machine(
    placement: Placement,
    *,
    name: str,
    disk: str,
    nic_id: str,
    image: cm.ImageReference,
    custom_data_b64: str,
    disk_size_gb: int,
    config: AzureConfig,
    ssh_public_key: str,
    tags: dict[str, str],
) -> cm.VirtualMachine:
    """The VM: spot as ``priority=Spot`` evicted by deletion at any price up to on-demand (-1)."""
    if not placement.instance_type:
        raise LaunchError(
            "an Azure placement needs an instance_type (the VM size, e.g. Standard_NC24ads_A100_v4)"
        )
    spot = placement.use_spot
    user = config.admin_username
    return cm.VirtualMachine(
        location=placement.region,
        # Azure catalog rows have no zone; a pinned one ("1", "2", "3") becomes the VM's zone.
        zones=[placement.zone] if placement.zone else None,
        tags=tags,
        properties=cm.VirtualMachineProperties(
            hardware_profile=cm.HardwareProfile(vm_size=placement.instance_type),
            storage_profile=cm.StorageProfile(
                image_reference=image,
                os_disk=cm.OSDisk(
                    name=disk,
                    create_option="FromImage",
                    delete_option="Delete",
                    disk_size_gb=disk_size_gb,
                    managed_disk=cm.ManagedDiskParameters(storage_account_type=config.disk_sku),
                ),
            ),
            os_profile=cm.OSProfile(
                computer_name=name,
                admin_username=user,
                custom_data=custom_data_b64,
                linux_configuration=cm.LinuxConfiguration(
                    disable_password_authentication=True,
                    ssh=cm.SshConfiguration(
                        public_keys=[
                            cm.SshPublicKey(
                                path=f"/home/{user}/.ssh/authorized_keys", key_data=ssh_public_key
                            )
                        ]
                    ),
                ),
            ),
            # Detach, not Delete: when Azure evicts a spot VM (deleting it) the NIC stays, which is how
            # ``status`` tells an eviction from a VM that never existed; terminate deletes it.
            network_profile=cm.NetworkProfile(
                network_interfaces=[
                    cm.NetworkInterfaceReference(
                        id=nic_id,
                        properties=cm.NetworkInterfaceReferenceProperties(
                            primary=True, delete_option="Detach"
                        ),
                    )
                ]
            ),
            priority="Spot" if spot else "Regular",
            eviction_policy="Delete" if spot else None,
            billing_profile=cm.BillingProfile(max_price=-1) if spot else None,
        ),
    )
