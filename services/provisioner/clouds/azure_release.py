"""Releasing what Stratus created on Azure for a service once it is down (blocking SDK calls).

Per replica, ``terminate`` already deletes the VM with its NIC, public IP, NSG and OS disk; what
can stay behind is a replica's network resources whose VM went another way (a spot eviction
deletes the VM and leaves its NIC, a clean-up that failed half-way). ``release_service`` deletes
those: NICs, public IPs and NSGs tagged ``stratus-service=<service>`` in the region's resource
group whose VM (tag ``stratus-vm``) no longer exists. Then the region's resource group goes too,
when it is Stratus's (tag ``stratus=true``, as ``azure_launch`` creates it) and holds nothing
but Stratus's VNet: a group with anything else in it (another service's replica, a resource a
user put there) is left alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from . import azure_names as names
from .azure_clients import AzureClients
from .azure_config import AzureConfig
from .azure_inventory import delete_replica, wait

log = logging.getLogger("stratus.provisioner.azure")
GROUP_TAG = {"stratus": "true"}


def _in_group(resource: Any, group: str) -> bool:
    parts = (resource.id or "").split("/")
    return len(parts) > 4 and parts[4].lower() == group.lower()


def orphan_vms(clients: AzureClients, group: str, service: str) -> list[str]:
    """VM names whose tagged NIC, IP or NSG of ``service`` in ``group`` outlived the VM."""
    net = clients.network
    listed: Iterable[Any] = [
        *net.network_interfaces.list_all(),
        *net.public_ip_addresses.list_all(),
        *net.network_security_groups.list_all(),
    ]
    vms = {
        (r.tags or {}).get(names.TAG_VM, "")
        for r in listed
        if _in_group(r, group) and (r.tags or {}).get(names.TAG_SERVICE) == service
    }
    out: list[str] = []
    # A multi-node replica's workers before its head: their NICs hold the head's NSG.
    for vm in sorted(vms - {""}, key=lambda v: (len(names.nodes_of(v)) > 1, v)):
        try:
            clients.compute.virtual_machines.get(group, vm)
        except ResourceNotFoundError:
            out.append(vm)
    return out


def only_stratus_network(clients: AzureClients, group: str, config: AzureConfig) -> bool:
    """Whether ``group`` is Stratus's and holds nothing but its VNet."""
    try:
        found = clients.resource.resource_groups.get(group)
    except ResourceNotFoundError:
        return False
    if (found.tags or {}).get("stratus") != GROUP_TAG["stratus"]:
        return False
    vnet_type = "microsoft.network/virtualnetworks"
    for resource in clients.resource.resources.list_by_resource_group(group):
        if (resource.type or "").lower() != vnet_type or resource.name != config.vnet_name:
            return False
    return True


def release_service(
    clients: AzureClients, config: AzureConfig, service: str, region: str, timeout: float
) -> bool:
    """Delete the service's leftovers in ``region`` and the region's group once it is empty.

    Returns whether the resource group was deleted."""
    group = config.resource_group(region)
    for vm in orphan_vms(clients, group, service):
        log.info("deleting the leftover network resources of %s VM %s in %s", service, vm, group)
        delete_replica(clients, group, vm, timeout)
    if not only_stratus_network(clients, group, config):
        return False
    with contextlib.suppress(ResourceNotFoundError):
        wait(clients.resource.resource_groups.begin_delete(group), timeout, f"delete resource group {group}")
    log.info("deleted resource group %s (no Stratus VM is left in %s)", group, region)
    return True
