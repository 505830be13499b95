"""Fields SkyPilot 0.14.1 accepts in a service YAML that Stratus does not implement yet.

Each is refused naming the field and saying what it would do, instead of "unknown field" (they
are known) or being silently dropped (the service would then run differently than written).
"""

from __future__ import annotations

from collections.abc import Mapping

from .fields import Issues, Section

TASK: Mapping[str, str] = {
    "config": "per-task overrides of SkyPilot's config",
    "event_callback": "a command SkyPilot runs on job events",
    "volumes": "SkyPilot volumes mounted into the task",
    "volume_mounts": "SkyPilot volume mounts",
    "managed_secrets": "secrets from SkyPilot's managed secrets store; pass them with --secret",
    "api_server_access": "the task's access to a SkyPilot API server",
    "file_mounts_mapping": "SkyPilot's internal file mount translation",
    "_metadata": "SkyPilot's internal task metadata",
}
RESOURCES: Mapping[str, str] = {
    "autostop": "stopping the cluster when idle; a replica stops by scaling",
    "ephemeral_storage": "a Kubernetes pod's ephemeral storage",
    "local_disk": "an instance with local disks",
    "max_hourly_cost": "a price cap on the instance",
    "priority": "a Kubernetes scheduling priority",
    "priority_class": "a Kubernetes priority class",
    "volumes": "SkyPilot volumes attached to the instance",
}


def refuse(sec: Section, fields: Mapping[str, str], issues: Issues) -> None:
    for name, what in fields.items():
        if sec.has(name):
            issues.add(
                sec.at(name),
                f"not supported by Stratus yet (in SkyPilot 0.14.1: {what}); remove it",
            )
