"""Names, tags and ids of Stratus' Azure resources (pure).

A VM is named ``stratus-<service>-<replica>-<random>`` (letters, digits and hyphens, at most 64
characters, which also fits a Linux computer name); its NIC, NSG, public IP and OS disk are
``<vm>-nic``, ``<vm>-nsg``, ``<vm>-ip`` and ``<vm>-osdisk``. The VM and its NIC carry the tags
below, so ``list_instances`` rediscovers replicas after a restart and ``status`` can tell an
evicted spot VM (gone, NIC left behind) from one that never existed.

An instance id is ``<resource group>/<vm name>``: every per-VM call needs both.
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
MAX_VM_NAME = 64

_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_VM_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?\Z")
_GROUP = re.compile(r"[-\w.()]{1,90}\Z")


def vm_name(service: str, replica_id: int, suffix: str | None = None) -> str:
    """A fresh VM name: the random suffix keeps a relaunch apart from a dying predecessor."""
    tail = f"-{replica_id}-{suffix or secrets.token_hex(3)}"
    room = MAX_VM_NAME - len("stratus-") - len(tail)
    part = _NOT_NAME.sub("-", service.lower()).strip("-")[:room].rstrip("-") or "x"
    return f"stratus-{part}{tail}"


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
