"""Reading Compute Engine ``Instance`` answers: address, Stratus labels, facts (pure)."""

from __future__ import annotations

import msgspec
from google.cloud import compute_v1

from libs.events.types import Placement

from . import gcp_names
from .base import Instance
from .gcp_config import GcpConfig
from .gcp_request import N1_ACCELERATORS
from .gcp_status import InstanceFacts

_ACCELERATOR_NAMES = {gcp: name for name, gcp in N1_ACCELERATORS.items()}


def metadata_value(inst: compute_v1.Instance, key: str) -> str | None:
    for item in inst.metadata.items:
        if item.key == key:
            return item.value
    return None


def address(inst: compute_v1.Instance, config: GcpConfig) -> str | None:
    """The IP the router reaches the instance at (None until GCP has assigned it)."""
    for interface in inst.network_interfaces:
        if config.address == "private":
            return interface.network_i_p or None
        for access in interface.access_configs:
            if access.nat_i_p:
                return access.nat_i_p
    return None


def private_address(inst: compute_v1.Instance) -> str | None:
    """The VPC address (what a replica's nodes reach each other at)."""
    return next((i.network_i_p for i in inst.network_interfaces if i.network_i_p), None)


def is_spot(inst: compute_v1.Instance) -> bool:
    return inst.scheduling.provisioning_model == "SPOT" or bool(inst.scheduling.preemptible)


def facts(inst: compute_v1.Instance, *, interruption: str = "", deleting: bool = False) -> InstanceFacts:
    return InstanceFacts(
        status=inst.status,
        spot=is_spot(inst),
        last_stop=inst.last_stop_timestamp,
        interruption=interruption,
        deleting=deleting,
    )


def placement_of(inst: compute_v1.Instance) -> Placement:
    zone = gcp_names.last_segment(inst.zone)
    accelerators: dict[str, float] = {}
    for acc in inst.guest_accelerators:
        gcp_type = gcp_names.last_segment(acc.accelerator_type)
        accelerators[_ACCELERATOR_NAMES.get(gcp_type, gcp_type)] = float(acc.accelerator_count)
    return Placement(
        cloud="gcp",
        region=gcp_names.region_of(zone),
        zone=zone,
        instance_type=gcp_names.last_segment(inst.machine_type),
        accelerators=accelerators,
        use_spot=is_spot(inst),
    )


def url_for(ip: str, port: int) -> str:
    return f"http://{ip}:{port}"


def to_instance(
    inst: compute_v1.Instance, config: GcpConfig, placement: Placement | None = None
) -> Instance | None:
    """The Stratus view of a labelled instance (None when it is not one of ours or lacks facts)."""
    labels = dict(inst.labels)
    service = metadata_value(inst, gcp_names.METADATA_SERVICE)
    port = metadata_value(inst, gcp_names.METADATA_PORT)
    replica = labels.get(gcp_names.LABEL_REPLICA, "")
    if not service or not replica.isdigit() or not port or not port.isdigit():
        return None
    where = placement or placement_of(inst)
    ip = address(inst, config)
    details = {
        "name": inst.name,
        "zone": where.zone,
        "gcp_id": str(inst.id) if inst.id else "",
        "gcp_status": inst.status,
        "version": labels.get(gcp_names.LABEL_VERSION, ""),
    }
    if ip:
        details["log_url"] = url_for(ip, config.log_port)
    return Instance(
        instance_id=gcp_names.instance_id(where.zone, inst.name),
        service=service,
        replica_id=int(replica),
        url=url_for(ip, int(port)) if ip else "",
        placement=where,
        details=details,
    )


def is_worker(inst: compute_v1.Instance) -> bool:
    """A node of a multi-node replica other than its head (``list_instances`` shows heads only)."""
    rank = dict(inst.labels).get(gcp_names.LABEL_NODE_RANK)
    return rank is not None and rank != "0"


def with_nodes(head: Instance, ips: dict[str, str]) -> Instance:
    """``head`` with its nodes' ids, and their private IPs (``ips``: instance id -> IP) when
    every node has one; a single-node replica as it is."""
    zone, name = gcp_names.parse_instance_id(head.instance_id)
    names = gcp_names.nodes_of(name)
    if len(names) == 1:
        return head
    ids = [gcp_names.instance_id(zone, n) for n in names]
    found = [ips.get(i, "") for i in ids]
    return msgspec.structs.replace(
        head,
        node_ids=ids,
        node_ips=found if all(found) else [],
        details={**head.details, "nodes": str(len(names))},
    )


def heads(instances: list[compute_v1.Instance], config: GcpConfig) -> list[Instance]:
    """The replicas among listed instances: heads and single nodes, with their nodes filled in."""
    ips = {
        gcp_names.instance_id(gcp_names.last_segment(inst.zone), inst.name): private_address(inst) or ""
        for inst in instances
    }
    out: list[Instance] = []
    for inst in instances:
        found = None if is_worker(inst) else to_instance(inst, config)
        if found is not None:
            out.append(with_nodes(found, ips))
    return out
