"""Launching one replica VM on Azure (blocking SDK calls; the provider runs them in a thread).

Per region, once: the resource group and the shared VNet/subnet. Per VM: its NSG (the service
port, the log port and the task's ports from ``source_ranges`` only), its public IP (when the
URL uses one), its NIC, then the VM itself, waiting (bounded) for the creation to finish, since
allocation failures (AllocationFailed...) arrive on that operation, not on the PUT. Whatever
fails, everything this launch created is deleted again before the error is raised.

A multi-node replica: one NSG (the head's) for every node, then each node's public IP and NIC,
then the NSG again, now also allowing everything from the nodes' private addresses (the NSG
otherwise denies VNet traffic), then the VMs, created together, each with its own node's
startup script and the node tags. If any node fails, every node is deleted, workers first.
"""

from __future__ import annotations

import logging
import threading

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.mgmt.resource.resources import models as rm

from libs.events.types import Placement

from . import azure_names as names
from . import azure_specs as specs
from .azure_clients import AzureClients
from .azure_config import AzureConfig
from .azure_errors import translate
from .azure_inventory import delete_replica, wait
from .azure_release import release_service
from .base import Instance, LaunchTask
from .errors import LaunchError, TransientError

log = logging.getLogger("stratus.provisioner.azure")
# Seconds for the quick network operations (ARM usually answers them synchronously).
NETWORK_TIMEOUT_S = 120.0


class Launcher:
    def __init__(self, clients: AzureClients, config: AzureConfig, ssh_public_key: str) -> None:
        self.clients = clients
        self.config = config
        self.ssh_public_key = ssh_public_key
        self._subnets: dict[str, str] = {}  # region -> subnet id, once ensured
        self._lock = threading.Lock()  # guards the two dicts
        self._region_locks: dict[str, threading.Lock] = {}  # one region's first launches wait; others do not
        self._active: dict[str, int] = {}  # region -> launches under way (its group must stay)

    def _subnet(self, region: str) -> str:
        """The region's resource group and VNet (created if missing); the subnet's id."""
        with self._lock:
            region_lock = self._region_locks.setdefault(region, threading.Lock())
        with region_lock:
            with self._lock:
                known = self._subnets.get(region)
            if known is not None:
                return known
            group, cfg, net = self.config.resource_group(region), self.config, self.clients.network
            self.clients.resource.resource_groups.create_or_update(
                group, rm.ResourceGroup(location=region, tags={"stratus": "true"})
            )
            try:
                vnet = net.virtual_networks.get(group, cfg.vnet_name)
            except ResourceNotFoundError:
                poller = net.virtual_networks.begin_create_or_update(
                    group, cfg.vnet_name, specs.virtual_network(region, cfg)
                )
                vnet = wait(poller, NETWORK_TIMEOUT_S, f"create VNet {cfg.vnet_name}")
            subnet = next((s for s in vnet.subnets or [] if s.name == cfg.subnet_name and s.id), None)
            if subnet is None:
                subnet = wait(
                    net.subnets.begin_create_or_update(
                        group, cfg.vnet_name, cfg.subnet_name, specs.subnet(cfg)
                    ),
                    NETWORK_TIMEOUT_S,
                    f"create subnet {cfg.subnet_name}",
                )
            if not subnet.id:
                raise TransientError(f"subnet {cfg.subnet_name} of {cfg.vnet_name} in {group} has no id yet")
            with self._lock:
                self._subnets[region] = subnet.id
            return subnet.id

    def release(self, service: str, region: str, timeout: float) -> None:
        """``azure_release.release_service`` under the region's lock, unless a launch is under way
        there; the region's subnet is looked up again at the next launch."""
        with self._lock:
            region_lock = self._region_locks.setdefault(region, threading.Lock())
        with region_lock:
            with self._lock:
                if self._active.get(region, 0):
                    return
            release_service(self.clients, self.config, service, region, timeout)
            with self._lock:
                self._subnets.pop(region, None)

    def launch(self, placement: Placement, task: LaunchTask, scripts: list[str]) -> Instance:
        """Launch the replica: one VM per script (by node rank; one for a single node)."""
        if placement.cloud != "azure" or not placement.region:
            raise LaunchError(f"not an Azure placement (cloud and region needed): {placement!r}")
        with self._lock:
            self._active[placement.region] = self._active.get(placement.region, 0) + 1
        try:
            return self._launch(placement, task, scripts)
        finally:
            with self._lock:
                self._active[placement.region] -= 1

    def _launch(self, placement: Placement, task: LaunchTask, scripts: list[str]) -> Instance:
        cfg, net, region = self.config, self.clients.network, placement.region
        # Validated before any resource exists, so a bad task leaves nothing behind.
        data = [specs.custom_data(script) for script in scripts]
        gpu = bool(placement.accelerators) or task.num_gpus > 0
        image = specs.image_reference(task.image_for(region), gpu=gpu, vm_size=placement.instance_type)
        ports = specs.open_ports(task.service_port, cfg.log_port, task.ports)
        sources = cfg.ingress_ranges()
        group, vms = cfg.resource_group(region), names.vm_names(task.service, task.replica_id, len(scripts))
        head, multi = vms[0], len(vms) > 1
        doing = f"prepare resource group {group} and VNet {cfg.vnet_name} in {region}"
        try:
            subnet_id = self._subnet(region)
        except Exception as exc:
            raise translate(exc, doing) from exc

        def tag(rank: int, url: str, private: str = "") -> dict[str, str]:
            found = names.tags(
                service=task.service,
                replica_id=task.replica_id,
                version=task.version,
                spot=placement.use_spot,
                url=url,
                price=placement.price_per_hour,
                accelerators=dict(placement.accelerators),
                vm=vms[rank],
            )
            if multi:
                found.update(names.node_tags(rank=rank, head=head, private_ip=private))
            return found

        nodes: list[tuple[str, str, str]] = []  # (NIC id, private address, URL address) by rank
        try:
            # One NSG for every node of the replica (the head's): its nodes reach each other.
            doing = f"create network security group {names.nsg_name(head)}"
            nsg = wait(
                net.network_security_groups.begin_create_or_update(
                    group, names.nsg_name(head), specs.security_group(region, ports, sources, tag(0, ""))
                ),
                NETWORK_TIMEOUT_S,
                doing,
            )
            for rank, vm in enumerate(vms):
                ip_id, public = None, ""
                if cfg.address == "public":
                    doing = f"create public IP {names.ip_name(vm)}"
                    ip = wait(
                        net.public_ip_addresses.begin_create_or_update(
                            group, names.ip_name(vm), specs.public_ip(region, tag(rank, ""))
                        ),
                        NETWORK_TIMEOUT_S,
                        doing,
                    )
                    ip_id, public = ip.id, ip.ip_address or ""
                doing = f"create NIC {names.nic_name(vm)}"
                body = specs.network_interface(
                    region, subnet_id=subnet_id, nsg_id=nsg.id or "", ip_id=ip_id, tags=tag(rank, "")
                )
                nic = wait(
                    net.network_interfaces.begin_create_or_update(group, names.nic_name(vm), body),
                    NETWORK_TIMEOUT_S,
                    doing,
                )
                configs = nic.ip_configurations or []
                private = (configs[0].private_ip_address or "") if configs else ""
                address = public if cfg.address == "public" else private
                if not address or (multi and not private):
                    raise TransientError(f"{doing}: Azure gave no {cfg.address} address yet")
                nodes.append((nic.id or "", private, address))
            if multi:
                doing = f"open network security group {names.nsg_name(head)} to the replica's nodes"
                peers = [private for _nic, private, _address in nodes]
                body_nsg = specs.security_group(region, ports, sources, tag(0, ""), peers=peers)
                wait(
                    net.network_security_groups.begin_create_or_update(group, names.nsg_name(head), body_nsg),
                    NETWORK_TIMEOUT_S,
                    doing,
                )
            kind = "spot" if placement.use_spot else "on-demand"
            started = []
            for rank, (vm, (nic_id, private, address)) in enumerate(zip(vms, nodes, strict=True)):
                doing = f"create VM {vm} ({placement.instance_type}, {kind}) in {region}"
                machine = specs.virtual_machine(
                    placement,
                    name=vm,
                    disk=names.disk_name(vm),
                    nic_id=nic_id,
                    image=image,
                    custom_data_b64=data[rank],
                    disk_size_gb=task.disk_size or cfg.disk_size_gb,
                    config=cfg,
                    ssh_public_key=self.ssh_public_key,
                    tags=tag(rank, f"http://{address}:{task.service_port}", private),
                )
                poller = self.clients.compute.virtual_machines.begin_create_or_update(group, vm, machine)
                started.append((doing, poller))
            # The nodes are created together: once the first is done the others mostly are too.
            for doing, poller in started:  # ``doing`` then names the node that failed
                wait(poller, cfg.operation_timeout_s, doing)
        except Exception as exc:
            error = translate(exc, doing)
            self._clean_up(group, vms, error)
            with self._lock:  # the VNet may be what failed (deleted meanwhile): check it again next time
                self._subnets.pop(region, None)
            raise error from exc
        _nic, private, address = nodes[0]
        details = {
            "resource_group": group,
            "vm_name": head,
            "private_ip": private,
            "public_ip": address if cfg.address == "public" else "",
            "priority": "Spot" if placement.use_spot else "Regular",
            "log_url": f"http://{address}:{cfg.log_port}",
        }
        if multi:
            details["nodes"] = str(len(vms))
        return Instance(
            instance_id=names.instance_id(group, head),
            service=task.service,
            replica_id=task.replica_id,
            url=f"http://{address}:{task.service_port}",
            placement=placement,
            details=details,
            node_ids=[names.instance_id(group, vm) for vm in vms] if multi else [],
            node_ips=[private for _nic, private, _address in nodes] if multi else [],
        )

    def _clean_up(self, group: str, vms: list[str], error: Exception) -> None:
        # Workers first: their NICs hold the head's NSG, which goes with the head.
        for vm in reversed(vms):
            try:
                delete_replica(self.clients, group, vm, NETWORK_TIMEOUT_S)
            except (AzureError, TransientError) as exc:
                log.warning("launch of %s failed (%s) and its clean-up too: %s", vm, error, exc)
