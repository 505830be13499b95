"""Turning a service version's typed spec into the provider's ``LaunchTask`` (pure).

It reads the ``ServiceSpec`` the fold decoded once (``VersionInfo.typed``); a recorded dict is
decoded the same lenient way, so a partial spec still gives a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libs.spec import ServiceSpec, decode_recorded_spec

from .clouds.base import LaunchTask


def _accelerator_count(spec: ServiceSpec) -> int:
    """GPUs per node: the base accelerator's count, else the first candidate that has one."""
    for candidate in (spec.resources, *spec.resources.any_of):
        if candidate.accelerators:
            return int(max(float(v or 1) for v in candidate.accelerators.values()))
    return 0


def launch_task(
    service: str,
    replica_id: int,
    version: int,
    spec: ServiceSpec | Mapping[str, Any],
    secrets: Mapping[str, str],
) -> LaunchTask:
    typed = spec if isinstance(spec, ServiceSpec) else decode_recorded_spec(spec)
    envs = dict(typed.envs)
    envs.update(secrets)
    ports = list(typed.resources.ports)
    port = typed.service.ports or (ports[0] if ports else 8080)
    return LaunchTask(
        service=service,
        replica_id=replica_id,
        version=version,
        service_port=port,
        setup=typed.setup,
        run=typed.run or None,
        envs=envs,
        workdir=typed.workdir,
        # SkyPilot writes file_mounts as {destination: source}; the provider takes source -> destination.
        file_mounts={src: dst for dst, src in typed.file_mounts.items() if isinstance(src, str)},
        ports=ports or [port],
        num_gpus=_accelerator_count(typed),
        # Every value from the secrets table is secret (spec envs with secret-looking names were
        # moved there by the API): a cloud provider fetches these at boot instead.
        secret_names=sorted(secrets),
        image_id=typed.resources.image_id or None,
        disk_size=typed.resources.disk_size or None,
        num_nodes=typed.num_nodes,
    )
