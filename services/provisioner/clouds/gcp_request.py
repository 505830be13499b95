"""The Compute Engine ``Instance`` body for a launch (pure: placement + task -> request).

GPUs: the a2/a3/a4/g2/g4 machine types come with their GPUs; an n1 type gets them attached
as ``guestAccelerators``; GPU VMs cannot live-migrate, so ``onHostMaintenance: TERMINATE``.

Spot: ``provisioningModel: SPOT`` with ``instanceTerminationAction: STOP``. STOP rather than
DELETE because a stopped VM stays visible as TERMINATED with its SPOT scheduling, so
``status`` can report PREEMPTED from the instance itself (a deleted one is only a 404, which
looks like any other disappearance); the provisioner then terminates (deletes) it, so the
stopped VM's disk is kept only until the replacement is under way.

Metadata carries only public values: the startup script (see ``startup.render_startup_script``,
which leaves secret envs to the bootstrap fetch) and the exact service name.
"""

from __future__ import annotations

from google.cloud import compute_v1

from libs.events.types import Placement

from . import gcp_names
from .base import LaunchTask
from .errors import LaunchError
from .gcp_config import GcpConfig

# Machine families whose GPUs are part of the machine type.
BUNDLED_GPU_FAMILIES = ("a2-", "a3-", "a4-", "g2-", "g4-")
# Accelerator name (as the catalog and specs spell it) -> GCP accelerator type for N1 VMs.
N1_ACCELERATORS = {
    "T4": "nvidia-tesla-t4",
    "V100": "nvidia-tesla-v100",
    "P100": "nvidia-tesla-p100",
    "P4": "nvidia-tesla-p4",
    "K80": "nvidia-tesla-k80",
}
GPU_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu129-ubuntu-2204-nvidia-580"
CPU_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
# Metadata values are limited to 256 KB each.
MAX_METADATA_VALUE = 256 * 1024


def accelerators(placement: Placement) -> list[compute_v1.AcceleratorConfig]:
    """The guestAccelerators of the placement's machine type ([] when it brings its own)."""
    if not placement.accelerators:
        return []
    machine = placement.instance_type
    if machine.startswith(BUNDLED_GPU_FAMILIES):
        return []
    if not machine.startswith("n1-"):
        raise LaunchError(
            f"GCP machine type {machine!r} cannot take attached GPUs {placement.accelerators}: "
            f"use an n1-* type or a GPU machine type ({', '.join(BUNDLED_GPU_FAMILIES)}...)"
        )
    configs = []
    for name, count in placement.accelerators.items():
        gcp_type = N1_ACCELERATORS.get(name.upper())
        if gcp_type is None:
            raise LaunchError(
                f"accelerator {name!r} cannot be attached to {machine} on GCP "
                f"(attachable: {', '.join(sorted(N1_ACCELERATORS))})"
            )
        if count != int(count) or count < 1:
            raise LaunchError(f"accelerator count for {name} must be a whole number >= 1, not {count}")
        configs.append(
            compute_v1.AcceleratorConfig(
                accelerator_type=f"zones/{placement.zone}/acceleratorTypes/{gcp_type}",
                accelerator_count=int(count),
            )
        )
    return configs


def has_gpus(placement: Placement) -> bool:
    return bool(placement.accelerators) or placement.instance_type.startswith(BUNDLED_GPU_FAMILIES)


def scheduling(placement: Placement) -> compute_v1.Scheduling:
    gpus = has_gpus(placement)
    if placement.use_spot:
        return compute_v1.Scheduling(
            provisioning_model="SPOT",
            instance_termination_action="STOP",
            automatic_restart=False,
            on_host_maintenance="TERMINATE",
        )
    return compute_v1.Scheduling(
        provisioning_model="STANDARD",
        automatic_restart=True,
        on_host_maintenance="TERMINATE" if gpus else "MIGRATE",
    )


def image(placement: Placement, task: LaunchTask) -> str:
    chosen = task.image_for(placement.region)
    if chosen:
        return chosen
    return GPU_IMAGE if has_gpus(placement) else CPU_IMAGE


def check_placement(placement: Placement) -> None:
    if placement.cloud != "gcp":
        raise LaunchError(f"the gcp provider cannot launch a {placement.cloud!r} placement")
    if not placement.zone or gcp_names.region_of(placement.zone) != placement.region:
        raise LaunchError(
            f"GCP placement needs a zone of region {placement.region!r} (like {placement.region}-a), "
            f"got zone {placement.zone!r}"
        )
    if not placement.instance_type:
        raise LaunchError("GCP placement has no instance_type (a machine type like n1-standard-8)")


def build_instance(
    placement: Placement,
    task: LaunchTask,
    *,
    name: str,
    startup_script: str,
    config: GcpConfig,
    head: str | None = None,
) -> compute_v1.Instance:
    """The body of ``instances.insert`` for this launch: of node ``task.node_rank`` of the
    multi-node replica whose head is named ``head``, when given."""
    check_placement(placement)
    if len(startup_script.encode()) > MAX_METADATA_VALUE:
        raise LaunchError(
            f"the startup script is {len(startup_script.encode())} bytes, over GCP's 256 KB metadata "
            "limit: make the workdir/file_mounts smaller or fetch them in setup"
        )
    interface = compute_v1.NetworkInterface(network=config.network)
    if config.address == "public":
        interface.access_configs = [compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
    metadata = [
        compute_v1.Items(key="startup-script", value=startup_script),
        compute_v1.Items(key=gcp_names.METADATA_SERVICE, value=task.service),
        compute_v1.Items(key=gcp_names.METADATA_PORT, value=str(task.service_port)),
    ]
    if has_gpus(placement):
        metadata.append(compute_v1.Items(key="install-nvidia-driver", value="True"))
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{placement.zone}/machineTypes/{placement.instance_type}",
        labels=gcp_names.labels(task.service, task.replica_id, task.version, rank=task.node_rank, head=head),
        tags=compute_v1.Tags(items=[gcp_names.service_tag(task.service)]),
        metadata=compute_v1.Metadata(items=metadata),
        guest_accelerators=accelerators(placement),
        scheduling=scheduling(placement),
        network_interfaces=[interface],
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=image(placement, task),
                    disk_size_gb=task.disk_size or config.disk_size_gb,
                ),
            )
        ],
    )
