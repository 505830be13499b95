"""Turning a service version's normalized spec into the provider's ``LaunchTask`` (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .clouds.base import LaunchTask


def _accelerator_count(resources: Mapping[str, Any]) -> int:
    acc = resources.get("accelerators")
    if isinstance(acc, dict) and acc:
        return int(max(float(v or 1) for v in acc.values()))
    for cand in resources.get("any_of") or []:
        n = _accelerator_count(cand) if isinstance(cand, Mapping) else 0
        if n:
            return n
    return 0


def _image_id(value: object) -> str | dict[str, str] | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and value:
        return {str(k): str(v) for k, v in value.items()}
    return None


def launch_task(
    service: str, replica_id: int, version: int, spec: Mapping[str, Any], secrets: Mapping[str, str]
) -> LaunchTask:
    section = spec.get("service") or {}
    resources = spec.get("resources") or {}
    envs = {k: str(v) for k, v in (spec.get("envs") or {}).items() if v is not None}
    envs.update(secrets)
    ports = [int(p) for p in resources.get("ports") or []]
    port = int(section.get("ports") or (ports[0] if ports else 8080))
    return LaunchTask(
        service=service,
        replica_id=replica_id,
        version=version,
        service_port=port,
        setup=spec.get("setup"),
        run=spec.get("run"),
        envs=envs,
        workdir=spec.get("workdir"),
        # SkyPilot writes file_mounts as {destination: source}; the provider takes source -> destination.
        file_mounts={
            str(src): str(dst) for dst, src in (spec.get("file_mounts") or {}).items() if isinstance(src, str)
        },
        ports=ports or [port],
        num_gpus=_accelerator_count(resources),
        # Every value from the secrets table is secret (spec envs with secret-looking names were
        # moved there by the API): a cloud provider fetches these at boot instead.
        secret_names=sorted(secrets),
        image_id=_image_id(resources.get("image_id")),
        disk_size=int(resources["disk_size"]) if resources.get("disk_size") else None,
    )
