"""Reading and deleting Stratus' Azure VMs (blocking SDK calls; the provider runs them in threads).

``delete_replica`` removes a VM and everything launched with it, in the order ARM requires
(the VM before the NIC it holds, the NIC before the IP and NSG it references), each step
idempotent: a resource already gone (404) is fine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from azure.core.exceptions import ResourceNotFoundError
from azure.core.polling import LROPoller
from azure.mgmt.compute import models as cm

from libs.events.types import Placement

from . import azure_names as names
from .azure_clients import AzureClients
from .azure_status import gone_status, vm_status
from .base import Instance, InstanceStatus
from .errors import TransientError

log = logging.getLogger("stratus.provisioner.azure")
T = TypeVar("T")


def wait(poller: LROPoller[T], timeout: float, doing: str) -> T:
    """The long-running operation's result, or ``TransientError`` once ``timeout`` passed."""
    result = poller.result(timeout=timeout)
    if not poller.done():
        raise TransientError(f"{doing}: not finished after {timeout:g} s (Azure is slow; retry later)")
    return result


def _absent_ok(
    delete: Callable[..., LROPoller[Any]], group: str, name: str, timeout: float, doing: str
) -> None:
    with contextlib.suppress(ResourceNotFoundError):
        wait(delete(group, name), timeout, doing)


def delete_replica(clients: AzureClients, group: str, vm: str, timeout: float) -> None:
    """Delete VM ``vm`` of ``group`` and its NIC, public IP, NSG and OS disk (absent ones skipped)."""
    net = clients.network
    steps: list[tuple[Callable[..., LROPoller[Any]], str, str]] = [
        (clients.compute.virtual_machines.begin_delete, vm, "VM"),
        (net.network_interfaces.begin_delete, names.nic_name(vm), "NIC"),
        (net.public_ip_addresses.begin_delete, names.ip_name(vm), "public IP"),
        (net.network_security_groups.begin_delete, names.nsg_name(vm), "network security group"),
        (clients.compute.disks.begin_delete, names.disk_name(vm), "OS disk"),
    ]
    for delete, name, what in steps:
        _absent_ok(delete, group, name, timeout, f"delete {what} {name} in {group}")


def replica_status(clients: AzureClients, group: str, vm: str) -> InstanceStatus:
    try:
        machine = clients.compute.virtual_machines.get(group, vm, expand="instanceView")
    except ResourceNotFoundError:
        return _gone(clients, group, vm)
    view = machine.instance_view
    codes = [s.code for s in (view.statuses or []) if s.code] if view is not None else []
    if not codes and machine.provisioning_state:
        codes = [f"ProvisioningState/{machine.provisioning_state}"]
    return vm_status(codes, spot=machine.priority == "Spot")


def _gone(clients: AzureClients, group: str, vm: str) -> InstanceStatus:
    try:
        nic = clients.network.network_interfaces.get(group, names.nic_name(vm))
    except ResourceNotFoundError:
        return gone_status(nic_left=False, spot=False)
    spot = (nic.tags or {}).get(names.TAG_PRIORITY) == "Spot"
    return gone_status(nic_left=names.is_stratus(nic.tags), spot=spot)


def as_instance(machine: cm.VirtualMachine, log_port: int) -> Instance | None:
    """A Stratus-tagged VM as an ``Instance`` (None for anything else, or one being deleted)."""
    tags = machine.tags or {}
    if not names.is_stratus(tags) or not machine.id or not machine.name:
        return None
    if (machine.provisioning_state or "").lower() == "deleting":
        return None
    group = machine.id.split("/")[4]
    try:
        replica_id, price = int(tags[names.TAG_REPLICA]), float(tags.get(names.TAG_PRICE) or 0)
    except ValueError:
        log.warning("VM %s has malformed stratus tags %s; skipped", machine.id, tags)
        return None
    spot = machine.priority == "Spot"
    placement = Placement(
        cloud="azure",
        region=machine.location or "",
        zone=(machine.zones or [""])[0],
        instance_type=getattr(machine.hardware_profile, "vm_size", "") or "",
        accelerators=names.parse_accelerators(tags.get(names.TAG_ACCELERATORS, "")),
        use_spot=spot,
        price_per_hour=price,
    )
    url = tags.get(names.TAG_URL, "")
    host = urlsplit(url).hostname or ""
    details = {
        "resource_group": group, "vm_name": machine.name, "priority": "Spot" if spot else "Regular",
        "log_url": f"http://{host}:{log_port}" if host else "",
    }  # fmt: skip
    return Instance(
        instance_id=names.instance_id(group, machine.name),
        service=tags[names.TAG_SERVICE],
        replica_id=replica_id,
        url=url,
        placement=placement,
        details=details,
    )


def with_nodes(head: Instance, ips: dict[str, str]) -> Instance:
    """``head`` with its nodes' ids, and their private IPs (``ips``: instance id -> IP, from the
    nodes' tags) when every node has one; a single-node replica as it is."""
    group, vm = names.parse_instance_id(head.instance_id)
    vms = names.nodes_of(vm)
    if len(vms) == 1:
        return head
    ids = [names.instance_id(group, n) for n in vms]
    found = [ips.get(i, "") for i in ids]
    return msgspec.structs.replace(
        head,
        node_ids=ids,
        node_ips=found if all(found) else [],
        details={**head.details, "nodes": str(len(vms))},
    )


def list_replicas(clients: AzureClients, service: str | None, log_port: int) -> list[Instance]:
    """Stratus's replicas (heads and single VMs; a multi-node replica's workers fill its head)."""
    machines = [m for m in clients.compute.virtual_machines.list_all() if names.is_stratus(m.tags, service)]
    ips = {
        names.instance_id(m.id.split("/")[4], m.name): (m.tags or {}).get(names.TAG_PRIVATE_IP, "")
        for m in machines
        if m.id and m.name
    }
    out: list[Instance] = []
    for machine in machines:
        inst = None if names.is_worker(machine.tags) else as_instance(machine, log_port)
        if inst is not None:
            out.append(with_nodes(inst, ips))
    return sorted(out, key=lambda i: (i.service, i.replica_id, i.instance_id))
