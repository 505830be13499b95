"""Reading Compute Engine ``Instance`` answers: address, Stratus labels, facts (pure)."""

from __future__ import annotations

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
