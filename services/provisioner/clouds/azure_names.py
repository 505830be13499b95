"""Names, tags and ids of Stratus' Azure resources (pure).

A VM is named ``stratus-<service>-<replica>-<random>`` (letters, digits and hyphens, at most 64
characters, which also fits a Linux computer name); its NIC, NSG, public IP and OS disk are
``<vm>-nic``, ``<vm>-nsg``, ``<vm>-ip`` and ``<vm>-osdisk``. The VM and its NIC carry the tags
below, so ``list_instances`` rediscovers replicas after a restart and ``status`` can tell an
evicted spot VM (gone, NIC left behind) from one that never existed.

An instance id is ``<resource group>/<vm name>``: every per-VM call needs both.

The VMs of a multi-node replica are named ``<base>-n<rank>of<count>`` (``vm_names``), the head's
ending in ``-n0of<count>``: from the head's id alone ``status`` and ``terminate`` know every
node, even once some are gone. They carry the node tags too (``node_tags``). A single VM's name
ends in its random hex suffix, which never reads ``n<digits>of<digits>``.
"""

from __future__ import annotations

import re
import secrets

from .errors import InstanceNotFound

TAG_SERVICE = "stratus-service"
TAG_REPLICA = "stratus-replica-id"
TAG_VERSION = "stratus-version"
TAG_PRIORITY = "stratus-priority"  # "Spot" or "Regular"
TAG_URL = "stratus-url"
TAG_PRICE = "stratus-price-per-hour"
TAG_ACCELERATORS = "stratus-accelerators"  # "A100:1,T4:2"
TAG_VM = "stratus-vm"
TAG_NODE_RANK = "stratus-node-rank"  # multi-node replicas only
TAG_HEAD = "stratus-head"  # multi-node replicas only: the head VM's name
TAG_PRIVATE_IP = "stratus-private-ip"  # multi-node replicas only: the node's VNet address
MAX_VM_NAME = 64

_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_VM_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?\Z")
_GROUP = re.compile(r"[-\w.()]{1,90}\Z")
_NODE = re.compile(r"-n([0-9]+)of([0-9]+)\Z")


def vm_name(service: str, replica_id: int, suffix: str | None = None, *, reserve: int = 0) -> str:
    """A fresh VM name: the random suffix keeps a relaunch apart from a dying predecessor.
    ``reserve``: characters left free for a node suffix."""
    tail = f"-{replica_id}-{suffix or secrets.token_hex(3)}"
    room = MAX_VM_NAME - len("stratus-") - len(tail) - reserve
    part = _NOT_NAME.sub("-", service.lower()).strip("-")[:room].rstrip("-") or "x"
    return f"stratus-{part}{tail}"


def _node_suffix(rank: int, count: int) -> str:
    return f"-n{rank}of{count}"


def vm_names(service: str, replica_id: int, count: int, suffix: str | None = None) -> list[str]:
    """The VM names of a replica's nodes, the head first (one node: the plain name)."""
    if count <= 1:
        return [vm_name(service, replica_id, suffix)]
    base = vm_name(service, replica_id, suffix, reserve=len(_node_suffix(count - 1, count)))
    return [base + _node_suffix(rank, count) for rank in range(count)]


def nodes_of(vm: str) -> list[str]:
    """Every node's VM name of the replica whose head is ``vm``, the head first (``[vm]`` for a
    single-node replica, or for a name that is not a head's)."""
    m = _NODE.search(vm)
    if m is None or m[1] != "0" or int(m[2]) < 2:
        return [vm]
    base, count = vm[: m.start()], int(m[2])
    return [base + _node_suffix(rank, count) for rank in range(count)]


def is_worker(resource_tags: dict[str, str] | None) -> bool:
    """A node of a multi-node replica other than its head (``list_instances`` shows heads only)."""
    rank = (resource_tags or {}).get(TAG_NODE_RANK)
    return rank is not None and rank != "0"


def node_tags(*, rank: int, head: str, private_ip: str = "") -> dict[str, str]:
    """The tags that mark node ``rank`` of the multi-node replica whose head VM is ``head``."""
    out = {TAG_NODE_RANK: str(rank), TAG_HEAD: head}
    if private_ip:
        out[TAG_PRIVATE_IP] = private_ip
    return out


def nic_name(vm: str) -> str:
    return f"{vm}-nic"


def nsg_name(vm: str) -> str:
    return f"{vm}-nsg"


def ip_name(vm: str) -> str:
    return f"{vm}-ip"


def disk_name(vm: str) -> str:
    return f"{vm}-osdisk"


def instance_id(resource_group: str, vm: str) -> str:
    return f"{resource_group}/{vm}"


def parse_instance_id(instance_id: str) -> tuple[str, str]:
    """(resource group, VM name); ``InstanceNotFound`` for an id this provider never made."""
    group, sep, vm = instance_id.partition("/")
    if not sep or not _GROUP.match(group) or not _VM_NAME.match(vm):
        raise InstanceNotFound(instance_id, "not an Azure instance id (<resource group>/<vm name>)")
    return group, vm


def tags(
    *,
    service: str,
    replica_id: int,
    version: int,
    spot: bool,
    url: str,
    price: float,
    accelerators: dict[str, float],
    vm: str,
) -> dict[str, str]:
    """Tags of the VM and its NIC (values are public: no env or secret ever goes here)."""
    return {
        TAG_SERVICE: service,
        TAG_REPLICA: str(replica_id),
        TAG_VERSION: str(version),
        TAG_PRIORITY: "Spot" if spot else "Regular",
        TAG_URL: url,
        TAG_PRICE: f"{price:g}",
        TAG_ACCELERATORS: ",".join(f"{k}:{v:g}" for k, v in sorted(accelerators.items())),
        TAG_VM: vm,
    }


def parse_accelerators(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, text.split(",")):
        name, _, count = item.rpartition(":")
        try:
            out[name] = float(count)
        except ValueError:
            continue
    return out


def is_stratus(resource_tags: dict[str, str] | None, service: str | None = None) -> bool:
    """Whether tags mark a Stratus replica (of ``service`` when given)."""
    if not resource_tags or TAG_SERVICE not in resource_tags or TAG_REPLICA not in resource_tags:
        return False
    return service is None or resource_tags[TAG_SERVICE] == service
